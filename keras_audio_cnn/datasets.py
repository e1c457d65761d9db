"""Datasets by name: their builders, their protocol, and opening them prepared.

Every per-dataset fact (sample rate, clip length, classes, folds or fixed splits)
is read from the builder's `DatasetInfo`; nothing here knows a particular dataset.
A dataset's protocol is a list of `data.Task`s, one model each:

- builders with splits `fold1`..`foldN` (ESC-50, UrbanSound8K, GTZAN `folds`, a
  user's audio folder): task `fold{k}` trains on every other fold, tests on fold k;
- builders with `train` and `test` splits (GTZAN `fault_filtered`, most catalog
  datasets): one task `test`, trained on `train`, validated on `valid` or
  `validation` when there is one, tested on `test`;
- catalog datasets with only `train`: deterministic stratified folds over it
  (`tfds_builders.folds`).

`sample_rate` is the rate the model needs. The builders here offer each protocol
at several rates, one config each (`tfds_builders.common.RateConfig`), resampled
once, at preparation: a rate picks the config of the named protocol at that rate
(`esc50` at 32000 Hz is `esc50/32000hz`). An audio folder is resampled to any
rate; a TFDS catalog dataset has its own, which TFDS's preparation cannot change.
`available_rates` tells the rates of a name before anything is prepared.

`open_source` prepares a dataset (or reuses it) and returns its `data.Source`;
`open_prepared` opens prepared data again without the source data it was made from.
"""

import os
import re

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

import tfds_builders
import tfds_builders.common
import tfds_builders.folds
import tfds_builders.preparation
from keras_audio_cnn.config import CATALOG_PREFIX
from keras_audio_cnn.data import Source, Task
from tfds_builders import identities as identities_lib
from tfds_builders.audio_io import MAX_CLIP_SECONDS, AudioDataError

# The catalog's builders, and the audio folder (made from --audio_dir, not by name).
DATASETS = tuple(sorted(tfds_builders.DATASETS + ("audio_folder",)))
_FOLD_SPLIT = re.compile(r"fold(\d+)$")
# Carved folds are `tfds_builders.folds.stratified_folds` of the example indices
# with its fixed default seed (`tfds_builders.folds.SEED`), by class name.
_CATALOG_FOLDS = 5


def _known(dataset):
    base = dataset.split("/")[0]
    return base in DATASETS or dataset.startswith(CATALOG_PREFIX)


def _check_known(dataset):
    if not _known(dataset):
        raise AudioDataError(
            f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}, "
            f"or {CATALOG_PREFIX}NAME for a TFDS catalog audio dataset"
        )


def check_dataset_name(dataset, audio_dir=None, sample_rate=None):
    """Raises `AudioDataError` for a dataset name no builder serves, or (for the
    builders here) does not serve at `sample_rate`; makes no builder."""
    _check_known(dataset)
    if dataset == "audio_folder" and not audio_dir:
        raise AudioDataError(
            "--dataset=audio_folder needs --audio_dir=PATH: a folder with one sub-folder "
            "of audio files per class"
        )
    builder_name(dataset, sample_rate)


def _ours(dataset):
    return dataset.split("/")[0] in tfds_builders.DATASETS


def _named_config(dataset):
    """The config a name of a builder here asks for (the one it names, or the default
    one), whether it names one, and the configs of its protocol by rate."""
    base, _, name = dataset.partition("/")
    builder_class = tfds_builders.builder_class(base)
    configs = {config.name: config for config in builder_class.BUILDER_CONFIGS}
    if name and name not in configs:
        raise AudioDataError(
            f"unknown dataset {dataset!r}: {base} has no config {name!r}; choose one of "
            f"{', '.join(f'{base}/{n}' for n in configs)}"
        )
    config = configs[name or builder_class.DEFAULT_BUILDER_CONFIG_NAME]
    by_rate = {c.sample_rate: c for c in configs.values() if c.protocol == config.protocol}
    return config, bool(name), by_rate


def available_rates(dataset):
    """The sample rates (Hz) the dataset named `dataset` can be had at, known without
    preparing anything or making a builder, so that a model's rate can be checked first.

    - A builder here: the rates of its configs of the protocol named (sorted), e.g.
      `esc50` -> (16000, 32000, 44100), `gtzan/fault_filtered` -> (16000, 22050,
      32000); a name whose config names its rate has only that one
      (`urbansound8k/44100hz` -> (44100,)).
    - `audio_folder`: None, any rate (its files are resampled to `sample_rate`).
    - `tfds:NAME`: None, not known here; its builder declares it, and `open_source`
      (`make_builder`) refuses another rate before preparing anything.

    Raises:
      AudioDataError: an unknown dataset or config.
    """
    _check_known(dataset)
    if not _ours(dataset):
        return None
    config, named, by_rate = _named_config(dataset)
    if named and config.names_rate:
        return (config.sample_rate,)
    return tuple(sorted(by_rate))


def builder_name(dataset, sample_rate=None):
    """The name (`base/config`) whose builder serves `dataset` to a model at `sample_rate`.

    For a builder here, None keeps the name (its config, or the default one); a rate
    picks the config of the same protocol at that rate (`esc50` -> `esc50/32000hz`,
    `gtzan/fault_filtered` -> `gtzan/fault_filtered_32000hz`). Other names are
    returned as they are (see `make_builder` for a catalog dataset's rate).

    Raises:
      AudioDataError: an unknown config; a rate no config of the protocol offers; a
        name whose config names another rate (`urbansound8k/44100hz` at 32000 Hz).
    """
    if not _ours(dataset):
        return dataset
    config, named, by_rate = _named_config(dataset)
    if sample_rate is None:
        return dataset
    base = dataset.partition("/")[0]
    if sample_rate not in by_rate:
        rates = sorted(by_rate)
        offered = f"{', '.join(map(str, rates[:-1]))} or {rates[-1]}" if len(rates) > 1 \
            else str(rates[0])
        raise AudioDataError(
            f"dataset {dataset!r} has no config at {sample_rate} Hz, the rate the model "
            f"needs; it is offered at {offered} Hz: use a model (or --sample_rate) at one "
            "of those rates"
        )
    if named and config.names_rate and config.sample_rate != sample_rate:
        rate_left_out = f"{base}/{config.protocol}" if config.protocol else base
        raise AudioDataError(
            f"dataset {dataset!r} names clips at {config.sample_rate} Hz but the model "
            f"needs {sample_rate} Hz; use {base}/{by_rate[sample_rate].name}, or leave the "
            f"rate out of the name ({rate_left_out})"
        )
    return f"{base}/{by_rate[sample_rate].name}"


def _check_catalog_rate(builder, dataset, sample_rate):
    """Refuses a catalog dataset whose clips are not at `sample_rate` (TFDS prepares it
    as it is: nothing here can resample it)."""
    audio_key, _ = _supervised_keys(builder, dataset)
    rate = builder.info.features[audio_key].sample_rate
    if rate != sample_rate:
        has = f"holds clips at {rate} Hz" if rate else "does not say its sample rate"
        raise AudioDataError(
            f"dataset {dataset!r} {has} but the model needs {sample_rate} Hz, and TFDS "
            "prepares a catalog dataset without resampling it; copy its audio into a "
            "folder with one sub-folder per class and use --dataset=audio_folder "
            f"--audio_dir=PATH --sample_rate={sample_rate}"
        )


def make_builder(dataset, data_dir=None, *, audio_dir=None, sample_rate=None,
                 clip_seconds=None, num_folds=None):
    """The TFDS builder of a dataset name (`esc50`, `gtzan/fault_filtered`, `tfds:NAME`)
    for a model at `sample_rate` (None: the dataset's own rate).

    A builder here gives the config of `builder_name(dataset, sample_rate)`; an audio
    folder is resampled to `sample_rate` (default 22050 Hz); a catalog dataset at
    another rate than `sample_rate` is refused. Nothing is prepared.

    Raises:
      AudioDataError: an unknown dataset or config, or a rate it cannot be had at.
    """
    if dataset == "audio_folder":
        from tfds_builders.audio_folder import builder as folder

        options = {k: v for k, v in dict(
            sample_rate=sample_rate, clip_seconds=clip_seconds, num_folds=num_folds
        ).items() if v is not None}
        return folder.make_builder(audio_dir, data_dir=data_dir, **options)
    if _ours(dataset):
        return tfds_builders.builder(builder_name(dataset, sample_rate), data_dir=data_dir)
    try:
        builder = tfds.builder(dataset.removeprefix(CATALOG_PREFIX), data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise AudioDataError(
            f"unknown dataset {dataset!r}: {str(error).splitlines()[0]}") from error
    except ValueError as error:  # e.g. an unknown builder config
        raise AudioDataError(f"dataset {dataset!r}: {' '.join(str(error).split())}") from error
    if sample_rate is not None:
        _check_catalog_rate(builder, dataset, sample_rate)
    return builder


def _supervised_keys(builder, dataset):
    keys = builder.info.supervised_keys
    if not keys or len(keys) != 2 or not all(isinstance(k, str) for k in keys):
        raise AudioDataError(
            f"dataset {dataset!r} has no (audio, label) supervised keys; it cannot be "
            "trained on here"
        )
    audio, label = keys
    features = builder.info.features
    if not isinstance(features[audio], tfds.features.Audio):
        raise AudioDataError(f"dataset {dataset!r}: feature {audio!r} is not audio")
    if not isinstance(features[label], tfds.features.ClassLabel):
        raise AudioDataError(f"dataset {dataset!r}: feature {label!r} is not a class label")
    return audio, label


def _carved_folds(labels, class_names, num_folds):
    """The fold number (1..num_folds) of every example, from the examples' labels."""
    labels = np.asarray(labels)
    indices_by_class = {
        class_names[label]: np.flatnonzero(labels == label).tolist() for label in np.unique(labels)
    }
    fold_of = tfds_builders.folds.stratified_folds(indices_by_class, num_folds)
    return np.array([fold_of[index] for index in range(len(labels))], dtype=np.int64)


def planned_tasks(dataset, num_folds=None):
    """The tasks of a dataset known before it is prepared, so that options can be checked
    before any data work; None for a TFDS catalog dataset (its splits come with it)."""
    if dataset == "audio_folder":
        from tfds_builders.audio_folder import options

        names = [f"fold{k}" for k in range(1, (num_folds or options.DEFAULT_NUM_FOLDS) + 1)]
    elif _ours(dataset):
        names = make_builder(dataset).split_names()
    else:
        return None
    return _protocol(names, dataset)


def protocol(builder):
    """The tasks of a prepared builder, from its splits."""
    return _protocol(list(builder.info.splits), builder.name)


def _protocol(splits, name):
    folds = sorted(int(m.group(1)) for m in map(_FOLD_SPLIT.match, splits) if m)
    if folds:
        return [
            Task(
                name=f"fold{k}",
                train="+".join(f"fold{j}" for j in folds if j != k),
                test=f"fold{k}",
            )
            for k in folds
        ]
    if "train" in splits and "test" in splits:
        valid = next((s for s in ("valid", "validation") if s in splits), None)
        return [Task(name="test", train="train", test="test", valid=valid)]
    if "train" in splits:
        return [
            Task(name=f"fold{k}", train="train", test="train", fold=k)
            for k in range(1, _CATALOG_FOLDS + 1)
        ]
    raise AudioDataError(
        f"dataset {name!r} has neither fold1..foldN nor train/test splits "
        f"(it has: {', '.join(splits)})"
    )


def skipped_files(builder):
    """Files the builder could not decode and left out (recorded in its metadata)."""
    metadata = builder.info.metadata
    return list(metadata.get("skipped_files", [])) if metadata else []


def suspect_files(builder):
    """{file name: reason} of the files the builder kept although they look damaged.

    Recorded in the prepared dataset's metadata by the builders here
    (`tfds_builders.common.SUSPECT_FILES`); empty for other datasets and for data
    prepared before the check existed.
    """
    metadata = builder.info.metadata
    suspects = metadata.get(tfds_builders.common.SUSPECT_FILES) if metadata else None
    return dict(sorted((suspects or {}).items()))


def open_source(dataset, data_dir=None, manual_dir=None, *, audio_dir=None,
                sample_rate=None, clip_seconds=None, num_folds=None):
    """Prepares a dataset (downloading or reading `manual_dir`) and returns its `Source`.

    `sample_rate` is the rate the model needs (None: the dataset's own; see
    `make_builder`): a rate the dataset cannot be had at is refused before anything
    is prepared or downloaded. `Source.name` stays `dataset` as given; the config
    chosen is the builder's (`Source.data_record`). A dataset another process is
    preparing in `data_dir` is waited for and reused. On failure what this call created under `data_dir` is removed (and
    nothing of other processes' work), so a retry starts clean, and the error
    is an `AudioDataError` with one line.
    """
    check_dataset_name(dataset, audio_dir, sample_rate)
    if manual_dir is not None and not os.path.isdir(manual_dir):
        raise AudioDataError(
            f"--manual_dir={manual_dir} is not a directory; create it and put the "
            "dataset's archive in it, or leave the flag out to download"
        )
    builder = make_builder(dataset, data_dir, audio_dir=audio_dir, sample_rate=sample_rate,
                           clip_seconds=clip_seconds, num_folds=num_folds)
    # Waits for another process preparing it; a failure removes only what it created.
    tfds_builders.preparation.prepare(builder, tfds.download.DownloadConfig(manual_dir=manual_dir))
    return _source_of(builder, dataset)


def open_prepared(data_dir, dataset, config, version):
    """The `Source` of a dataset prepared earlier in `data_dir`, without its raw data.

    Reads `<data_dir>/<builder name>/<config>/<version>/` with
    `tfds.builder_from_directory`, which needs neither the builder's code, nor
    the archive or audio folder it was made from, and prepares nothing: e.g. an
    audio folder's data after the folder was changed or removed. The source is
    the one `open_source` returned when it prepared it: the same tasks, classes,
    rates, skipped and suspect files, and carved folds.

    Args:
      data_dir: the TFDS data directory it was prepared in.
      dataset: the dataset's name as given to `open_source` (`esc50`,
        `gtzan/fault_filtered`, `audio_folder`, `tfds:NAME`), also
        `Source.data_record(task)["dataset"]`.
      config: its TFDS config name (`data_record(task)["config"]`), None for a
        builder without configs.
      version: its version, e.g. "1.0.0" (`data_record(task)["version"]`).

    Raises:
      AudioDataError: no prepared data there.
    """
    name = dataset[len(CATALOG_PREFIX):] if dataset.startswith(CATALOG_PREFIX) else dataset
    path = os.path.join(os.fspath(data_dir), name.split("/")[0], *([config] if config else []),
                        str(version))
    if not tf.io.gfile.exists(os.path.join(path, "dataset_info.json")):
        config_text = f", config {config}" if config else ""
        raise AudioDataError(
            f"dataset {dataset}{config_text}, version {version} is not prepared in {data_dir} "
            f"(no {path}); prepare it again from its source data with the same options"
        )
    return _source_of(tfds.builder_from_directory(path), dataset)


def _source_of(builder, dataset):
    """The `Source` of a prepared builder of the dataset named `dataset`."""
    audio_key, label_key = _supervised_keys(builder, dataset)
    audio = builder.info.features[audio_key]
    tasks = protocol(builder)
    source = Source(
        name=dataset,
        builder=builder,
        sample_rate=int(audio.sample_rate),
        num_samples=0,
        class_names=list(builder.info.features[label_key].names),
        tasks=tasks,
        skipped_files=skipped_files(builder),
        suspect_files=suspect_files(builder),
        audio_key=audio_key,
        label_key=label_key,
        formerly=tuple(tuple(f) for f in getattr(builder.builder_config, "formerly", ())),
    )
    if audio.shape and audio.shape[0] is not None:
        source.num_samples = int(audio.shape[0])
    else:
        source.num_samples = _longest_clip(source, tasks[0].train)
    if any(task.fold is not None for task in tasks):
        labels = identities_lib.columns(source.builder, "train", [label_key], audio_key)[label_key]
        source.fold_of_example = _carved_folds(labels, source.class_names, len(tasks))
        source.fold_assignment = tfds_builders.folds.FOLD_ASSIGNMENT
    return source


def _longest_clip(source, split):
    ds = source.builder.as_dataset(split=split, shuffle_files=False)
    lengths = ds.map(lambda e: tf.shape(e[source.audio_key])[0]).batch(4096)
    longest = max(int(b.numpy().max()) for b in lengths)
    return min(longest, int(MAX_CLIP_SECONDS * source.sample_rate))
