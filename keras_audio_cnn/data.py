"""TFDS datasets as tf.data pipelines of (waveform, label) batches.

Every per-dataset fact (sample rate, clip length, classes, folds) is read from the
builder's `DatasetInfo`; nothing here knows a particular dataset.
"""

import os
import re
import shutil

import tensorflow as tf
import tensorflow_datasets as tfds

import tfds_builders
from keras_audio_cnn.audio_io import AudioDataError

DATASETS = tfds_builders.DATASETS
_FOLD_SPLIT = re.compile(r"fold(\d+)$")


def _new_entries(directory, before):
    if not os.path.isdir(directory):
        return []
    return [os.path.join(directory, n) for n in set(os.listdir(directory)) - before]


def prepare(dataset, data_dir=None, manual_dir=None):
    """Downloads (or reads from `manual_dir`) and prepares a dataset.

    Returns the prepared `tfds` builder. On failure everything this call created
    under `data_dir` is removed, so a retry starts clean, and the error is an
    `AudioDataError` with a one-line message.
    """
    if dataset not in DATASETS:
        raise AudioDataError(
            f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}"
        )
    if manual_dir is not None and not os.path.isdir(manual_dir):
        raise AudioDataError(
            f"--manual_dir={manual_dir} is not a directory; create it and put the "
            "dataset's archive in it, or leave the flag out to download"
        )
    builder = tfds.builder(dataset, data_dir=data_dir)
    root = builder.data_dir_root
    root_existed = os.path.isdir(root)
    before = set(os.listdir(root)) if root_existed else set()
    dataset_dir = os.path.join(root, dataset)
    before_dataset = set(os.listdir(dataset_dir)) if os.path.isdir(dataset_dir) else set()
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
    except BaseException:
        for path in _new_entries(dataset_dir, before_dataset) + _new_entries(root, before):
            shutil.rmtree(path, ignore_errors=True)
        if not root_existed:
            shutil.rmtree(root, ignore_errors=True)
        raise
    return builder


def fold_numbers(builder):
    """The dataset's official folds, e.g. [1, 2, 3, 4, 5] for ESC-50."""
    numbers = sorted(
        int(m.group(1)) for m in map(_FOLD_SPLIT.match, builder.info.splits) if m
    )
    if not numbers:
        raise AudioDataError(
            f"dataset {builder.name!r} has no fold1..foldN splits "
            f"(it has: {', '.join(builder.info.splits)})"
        )
    return numbers


def training_split(builder, held_out):
    """The TFDS split string of every fold except `held_out`."""
    return "+".join(f"fold{k}" for k in fold_numbers(builder) if k != held_out)


def audio_spec(builder):
    """(sample_rate, num_samples) of the dataset's fixed-length clips."""
    audio = builder.info.features["audio"]
    return int(audio.sample_rate), int(audio.shape[0])


def class_names(builder):
    return list(builder.info.features["label"].names)


def _to_float(audio, label):
    # int16 PCM to float32 in [-1, 1), the model's input.
    return tf.cast(audio, tf.float32) / 32768.0, label


def load(builder, split, batch_size, *, shuffle=False, seed=0):
    """A batched `(waveform, label)` dataset of one TFDS split string.

    With `shuffle`, files are read in a seeded random order and clips pass a
    seeded shuffle buffer that is redrawn every epoch.
    """
    ds = builder.as_dataset(
        split=split,
        as_supervised=True,
        shuffle_files=shuffle,
        read_config=tfds.ReadConfig(shuffle_seed=seed),
    )
    if shuffle:
        num_examples = builder.info.splits[split].num_examples
        ds = ds.shuffle(min(num_examples, 2048), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
