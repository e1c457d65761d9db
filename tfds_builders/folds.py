"""Deterministic folds, for datasets without official ones.

Two assignments:

- `stratified_folds`: the trainer's data.py carves folds out of a TFDS catalog
  dataset that has only a `train` split, dealing its example indices. Such a
  split never changes, and the folds are as balanced as counts allow.
- `file_folds`: the audio folder puts each of a user's files in a fold that
  depends on its path alone (unless the folder's folds.csv gives the folds). A
  folder grows and shrinks: adding or removing files must never move another
  file to another fold, or a grown folder's test folds would hold files that
  models trained on earlier were trained on. Only a fold that is a function of
  the file alone guarantees that, so these folds are balanced in expectation
  only.
"""

import hashlib
import os
import zlib

import numpy as np

# The name of the assignment `stratified_folds` makes with the default `SEED`,
# recorded with results on carved folds. Give it a new name when the algorithm
# or `SEED` changes. ("stratified-v1" was data.py's earlier carving: one
# generator, seeded 0, for all classes taken by label index.)
FOLD_ASSIGNMENT = "stratified-v2"
# The seed of every stratified assignment here. It is part of the audio
# folder's folds, hence of its config names and prepared data: changing it
# prepares every folder anew.
SEED = 1234


def stratified_folds(keys_by_class, num_folds, seed=SEED):
    """Deterministic class-stratified folds: {key: fold in 1..num_folds}.

    Classes are taken in sorted order; each class's sorted keys are permuted
    with a generator seeded by `seed` and the CRC-32 of the class name, then
    dealt round-robin to folds 1, 2, ..., the count carrying on from class to
    class, so each class's members, and all members, are spread over the folds
    as evenly as counts allow. The folds depend only on the classes, their keys,
    `num_folds` and `seed`, not on the order these are given in.

    Args:
      keys_by_class: {class name (str): the keys of its members}; keys are
        distinct and of one sortable type, e.g. relative file paths or example
        indices.
      num_folds: number of folds.
      seed: the generators' seed.

    Returns:
      {key: fold number in 1..num_folds} for every key.
    """
    folds = {}
    position = 0
    for name in sorted(keys_by_class):
        keys = sorted(keys_by_class[name])
        rng = np.random.default_rng([seed, zlib.crc32(os.fsencode(name))])
        for index in rng.permutation(len(keys)):
            folds[keys[index]] = position % num_folds + 1
            position += 1
    return folds


# The name of the assignment `file_folds` makes with the default `FILE_SALT`,
# recorded in an audio folder's metadata (`folds`). Give it a new name when the
# algorithm or `FILE_SALT` changes.
FILE_FOLD_ASSIGNMENT = "file-sha256-v1"
# The salt of `file_folds`. Part of the audio folder's folds, hence of its config
# names and prepared data: changing it prepares every folder anew.
FILE_SALT = "keras_audio_cnn/audio_folder/"


def file_folds(keys, num_folds, salt=FILE_SALT):
    """Folds that depend on each key alone: {key: 1 + sha256(salt + key) mod num_folds}.

    The SHA-256 digest of the bytes of `salt + key` (UTF-8; a file name that is not
    UTF-8 as the bytes the OS gave, `os.fsencode`), read as a big-endian
    integer, modulo `num_folds`, plus one. Adding or removing keys never moves
    another key to another fold. Each key falls in each fold with probability
    1 / num_folds, so fold sizes, overall and per class, are balanced only in
    expectation: a fold may get no key at all.

    Args:
      keys: distinct strings, e.g. relative file paths.
      num_folds: number of folds.
      salt: prefixed to every key before hashing.

    Returns:
      {key: fold number in 1..num_folds} for every key.
    """
    return {key: _hash_fold(salt + key, num_folds) for key in keys}


def _hash_fold(text, num_folds):
    digest = hashlib.sha256(os.fsencode(text)).digest()
    return int.from_bytes(digest, "big") % num_folds + 1
