"""Deterministic class-stratified folds, for datasets without official ones.

The project's one fold assignment: the audio folder deals a user's files to
folds with it (unless the folder's folds.csv gives them), and the trainer's
data.py carves folds out of a TFDS catalog dataset that has only a `train`
split, dealing its example indices.
"""

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
        rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
        for index in rng.permutation(len(keys)):
            folds[keys[index]] = position % num_folds + 1
            position += 1
    return folds
