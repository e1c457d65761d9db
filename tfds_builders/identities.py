"""Which examples a prepared split holds: their identities and a fingerprint of them.

An example's identity is its `filename` feature, with `:<clip_index>` where the
dataset cuts files into clips (the audio folder), or, for a dataset without file
names (most TFDS catalog datasets), the SHA-256 of its stored audio. A set of
examples' fingerprint is the SHA-256 of their identities, sorted, one a line:
equal fingerprints mean the same examples, whatever order they are read in.
Nothing here decodes audio.
"""

import hashlib
import os

import numpy as np
import tensorflow_datasets as tfds

FILENAME = "filename"
CLIP_INDEX = "clip_index"


def split_identities(builder, split, audio_key="audio"):
    """`(file names or None, identities)` of a split's examples, in TFDS's order.

    Args:
      builder: a prepared `tfds.core.DatasetBuilder` (or one from
        `tfds.builder_from_directory`).
      split: a TFDS split name, e.g. "fold3" or "train".
      audio_key: the audio feature, read undecoded for datasets without file
        names.
    """
    features = builder.info.features
    if FILENAME in features:
        keys = [key for key in (FILENAME, CLIP_INDEX) if key in features]
        values = columns(builder, split, keys, audio_key)
        names = [os.fsdecode(name) for name in values[FILENAME]]  # a non-UTF-8 name too
        if CLIP_INDEX not in values:
            return names, names
        return names, [f"{name}:{clip}" for name, clip in zip(names, values[CLIP_INDEX])]
    audio = columns(builder, split, [audio_key], audio_key)[audio_key]
    return None, [
        hashlib.sha256(a if isinstance(a, bytes) else np.ascontiguousarray(a).tobytes()).hexdigest()
        for a in audio
    ]


def fingerprint(identities):
    """The SHA-256 hex digest of `identities`, sorted, one a line."""
    text = "".join(f"{identity}\n" for identity in sorted(identities))
    return hashlib.sha256(os.fsencode(text)).hexdigest()  # UTF-8, or a name's own bytes


def columns(builder, split, keys, audio_key="audio"):
    """Features `keys` of every example of a split, in order: {key: numpy array or list}.

    The audio is not decoded (`tfds.decode.SkipDecoding`): reading labels or file
    names costs reading the records, and an audio column holds the stored bytes
    (or values). (`tfds.decode.PartialDecoding`, which would not parse the audio
    at all, logs TFDS's "`FeatureConnector.dtype` is deprecated" warning.)
    """
    decoders = {audio_key: tfds.decode.SkipDecoding()}
    ds = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)
    ds = ds.map(lambda example: {key: example[key] for key in keys})
    if not all(spec.shape.is_fully_defined() for spec in ds.element_spec.values()):
        examples = list(tfds.as_numpy(ds))  # Audio of varying length: no batches.
        return {key: [example[key] for example in examples] for key in keys}
    batches = list(tfds.as_numpy(ds.batch(4096)))
    return {key: np.concatenate([batch[key] for batch in batches]) if batches else np.array([])
            for key in keys}
