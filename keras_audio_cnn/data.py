"""A prepared dataset as tf.data pipelines of (waveform, label) batches, by task.

A `Task` is one model of a dataset's protocol (`datasets.protocol`): where it
trains, validates and is tested. A `Source` (from `datasets.open_source`) loads a
task's parts as batches. `Source.data_record(task)` identifies exactly the
examples a task trains and is tested on, for a model to record and an evaluation
to check; `datasets.open_prepared` opens the prepared data again without the
source data it was made from.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tfds_builders import identities as identities_lib

# The shuffle buffer holds decoded-size examples; bounding its bytes keeps memory
# flat whatever the dataset's size (2048 ESC-50 clips would take 900 MB). TFDS
# writes examples in a fixed random order, so the buffer only needs to reshuffle
# them from epoch to epoch.
SHUFFLE_BUFFER_BYTES = 128 * 2**20
MAX_SHUFFLE_BUFFER = 2048


@dataclasses.dataclass(frozen=True)
class Task:
    """One model of a protocol: where it trains, validates and is tested."""

    name: str  # "fold3" or "test": the model's directory name
    train: str  # TFDS split string
    test: str
    valid: str | None = None
    # Folds carved out of one split (catalog datasets with only `train`):
    # the test part is the examples of fold `fold` of `train`.
    fold: int | None = None


@dataclasses.dataclass
class Source:
    """A prepared dataset: its builder, clip format, classes and protocol."""

    name: str
    builder: tfds.core.DatasetBuilder
    sample_rate: int
    num_samples: int
    class_names: list
    tasks: list
    skipped_files: list
    # {file name: why it looks damaged}: files kept although suspect (cut short,
    # too short, all zero), sorted by name; see `suspect_files`.
    suspect_files: dict = dataclasses.field(default_factory=dict)
    audio_key: str = "audio"
    label_key: str = "label"
    # For carved folds: the fold number of every example of `train`, in order.
    fold_of_example: np.ndarray | None = None
    # For carved folds: the assignment that made them, `tfds_builders.folds.FOLD_ASSIGNMENT`;
    # None for datasets with their own folds or splits.
    fold_assignment: str | None = None
    # (config, version) of earlier preparations that hold exactly these examples
    # (`tfds_builders.common.RateConfig.formerly`, e.g. ESC-50 prepared as 1.0.0
    # without a config): a model recorded on one is checked as if recorded on this.
    formerly: tuple = ()
    # Set by `detached`: where `reopened` finds the prepared data.
    prepared_dir: str | None = None
    # {split: (file names or None, identities) of its examples, in order}, filled
    # by `data_record`.
    _identities: dict = dataclasses.field(default_factory=dict, init=False, repr=False,
                                          compare=False)

    def detached(self):
        """This source without its builder, to send to another process or machine.

        `reopened` there reads the prepared data from its directory with
        `tfds.builder_from_directory`, which needs neither the builder's code nor
        the raw audio, and prepares nothing (so `data_dir` must be storage every
        machine sees at the same path, or `gs://...`).
        """
        path = os.fspath(self.builder.data_dir)
        return dataclasses.replace(
            self, builder=None, prepared_dir=path if "://" in path else os.path.abspath(path))

    def reopened(self):
        """This source with a builder: itself, or a `detached` one reopened."""
        if self.builder is not None:
            return self
        return dataclasses.replace(self, builder=tfds.builder_from_directory(self.prepared_dir))

    def shuffle_buffer(self):
        """Examples in the shuffle buffer: at most SHUFFLE_BUFFER_BYTES of audio."""
        audio = self.builder.info.features[self.audio_key]
        channels = int(np.prod(audio.shape[1:])) if audio.shape and len(audio.shape) > 1 else 1
        example_bytes = self.num_samples * channels * np.dtype(audio.np_dtype).itemsize
        return int(np.clip(SHUFFLE_BUFFER_BYTES // max(example_bytes, 1), 16, MAX_SHUFFLE_BUFFER))

    def data_record(self, task):
        """What a task's model trains and is tested on, as a small JSON-able dict.

        Recorded with a model, it tells whether the data it is evaluated on
        later is the same: the dataset (`dataset`, its TFDS `config` or None,
        `version`: `open_prepared` opens it again), the `task`, and for each of
        its `parts` ("train", "valid" if it has one, "test") the TFDS `split`,
        the `num_examples` and a `fingerprint` of exactly which examples they
        are (carved folds: the examples of the fold, or of the others). With a
        `filename` feature, also `test_files`: the test part's file names,
        sorted, each once, to say which files changed.

        An example is identified by its `filename` feature (`<filename>:<clip
        index>` for an audio folder's clips) or, for datasets without one, by
        the SHA-256 of its stored audio; a part's fingerprint is the SHA-256 hex
        digest of its examples' identities, sorted, one a line
        (`tfds_builders.identities`). Reading them decodes no audio; each split
        is read once per source.
        """
        parts = {}
        for part in ("train", "valid", "test"):
            if getattr(task, part) is not None:
                identities = self._part_identities(task, part)
                parts[part] = {"split": getattr(task, part), "num_examples": len(identities),
                               "fingerprint": identities_lib.fingerprint(identities)}
        record = {
            "dataset": self.name,
            "config": self.builder.info.config_name or None,
            "version": str(self.builder.info.version),
            "task": task.name,
            "carved_fold": task.fold,
            "parts": parts,
        }
        if identities_lib.FILENAME in self.builder.info.features:
            record["test_files"] = sorted(set(self._part_identities(task, "test", files=True)))
        return record

    def _part_identities(self, task, part, files=False):
        """The identities (or with `files`, the file names) of a task's part's examples."""
        identities = []
        for split in getattr(task, part).split("+"):
            if split not in self._identities:
                self._identities[split] = identities_lib.split_identities(
                    self.builder, split, self.audio_key)
            identities += self._identities[split][0 if files else 1]
        if task.fold is None:
            return identities
        return [i for i, kept in zip(identities, self._in_part(task, part)) if kept]

    def _in_part(self, task, part):
        """For carved folds: whether each example of `train` is in the task's part."""
        in_fold = np.asarray(self.fold_of_example) == task.fold
        return in_fold if part == "test" else ~in_fold

    def num_examples(self, task, part):
        """The number of examples of a task's part ("train", "valid" or "test")."""
        if task.fold is not None:
            return int(np.sum(self._in_part(task, part)))
        return int(self.builder.info.splits[getattr(task, part)].num_examples)

    def load(self, task, part, batch_size, *, shuffle=False, seed=0, flags=False,
             copies=False, flag_value=0.0, drop_remainder=False):
        """Batched `(waveform float32 [batch, num_samples], label)` of a task's part.

        `part` is "train", "valid" or "test". With `shuffle`, files are read in a
        seeded order and examples pass a seeded buffer redrawn every epoch. With
        `flags`, inputs are `(waveform, augment_flag)`, the flag `flag_value` (1.0:
        the training model augments every clip); with `copies`, every clip comes
        with flag 0.0 and a second time with flag 1.0 (the copy that the training
        model augments), doubling the epoch as in the paper. With
        `drop_remainder`, a last batch smaller than `batch_size` is left out.
        """
        split = getattr(task, part)
        ds = self.builder.as_dataset(
            split=split,
            shuffle_files=shuffle and task.fold is None,
            read_config=tfds.ReadConfig(shuffle_seed=seed),
        )
        if task.fold is not None:
            keep = tf.constant(self.fold_of_example)
            wanted = task.fold

            def in_part(index, example):
                del example
                fold = tf.gather(keep, index)
                return fold == wanted if part == "test" else fold != wanted

            ds = ds.enumerate().filter(in_part).map(lambda index, example: example)
        # `filter` and `flat_map` lose the number of examples, which Keras shows
        # (as `Unknown`) and a batch count needs: it is known, so restore it.
        examples = self.num_examples(task, part)
        if copies:
            ds = ds.flat_map(
                lambda example: tf.data.Dataset.from_tensors(dict(example, _flag=0.0)).concatenate(
                    tf.data.Dataset.from_tensors(dict(example, _flag=1.0))
                )
            )
            examples *= 2
        ds = ds.apply(tf.data.experimental.assert_cardinality(examples))
        audio = self.builder.info.features[self.audio_key]
        if shuffle:
            ds = ds.shuffle(self.shuffle_buffer(), seed=seed, reshuffle_each_iteration=True)
        scale = 1.0 if np.dtype(audio.np_dtype).kind == "f" else 1.0 / 32768.0
        length = self.num_samples

        def to_waveform(example):
            waveform = tf.cast(example[self.audio_key], tf.float32) * scale
            if len(waveform.shape) > 1:  # (samples, channels): mix to mono
                waveform = tf.reduce_mean(waveform, axis=-1)
            waveform = waveform[:length]
            waveform = tf.pad(waveform, [[0, length - tf.shape(waveform)[0]]])
            waveform = tf.ensure_shape(waveform, [length])
            if flags:
                flag = example.get("_flag", tf.constant(flag_value))
                return (waveform, flag), example[self.label_key]
            return waveform, example[self.label_key]

        ds = ds.map(to_waveform, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
