"""Protocols from splits, carved folds, and a TFDS catalog dataset through data.py."""

import hashlib
import json
import os
import pathlib
import shutil
from unittest import mock

import numpy as np
import pytest
import soundfile as sf
import tensorflow_datasets as tfds
from tensorflow_datasets.core.features import feature as feature_lib

import tfds_builders
from keras_audio_cnn import data, datasets, provenance
from tfds_builders import common, folds
from tfds_builders.audio_folder import fake_data as folder_fake
from tfds_builders.audio_io import AudioDataError
from tfds_builders.esc50 import esc50_dataset_builder

# The committed dummy ESC-50 (3 classes x 5 folds of 10 ms clips), as a manual_dir.
ESC50_DUMMY = pathlib.Path(esc50_dataset_builder.__file__).parent / "dummy_data" / "manual_folder"


class FakeBuilder:
    def __init__(self, *splits):
        self.name = "fake"
        self.info = mock.Mock(splits={s: None for s in splits})


def test_fold_splits_give_one_task_per_fold():
    tasks = datasets.protocol(FakeBuilder("fold3", "fold1", "fold2", "fold10"))
    assert [t.name for t in tasks] == ["fold1", "fold2", "fold3", "fold10"]
    assert tasks[0].train == "fold2+fold3+fold10" and tasks[0].test == "fold1"
    assert tasks[3].train == "fold1+fold2+fold3" and tasks[3].test == "fold10"


def test_train_valid_test_splits_give_one_task():
    (task,) = datasets.protocol(FakeBuilder("train", "valid", "test"))
    assert (task.name, task.train, task.valid, task.test) == ("test", "train", "valid", "test")
    (task,) = datasets.protocol(FakeBuilder("train", "validation", "test"))
    assert task.valid == "validation"


def test_train_only_gives_carved_folds_and_no_split_is_an_error():
    tasks = datasets.protocol(FakeBuilder("train"))
    assert [(t.name, t.fold) for t in tasks] == [(f"fold{k}", k) for k in range(1, 6)]
    with pytest.raises(AudioDataError, match="neither fold1..foldN nor train/test"):
        datasets.protocol(FakeBuilder("extra"))


def test_unknown_dataset_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(AudioDataError, match="unknown dataset 'nope'.*esc50"):
        datasets.open_source("nope", str(tmp_path / "d"))
    with pytest.raises(AudioDataError, match="needs --audio_dir"):
        datasets.open_source("audio_folder", str(tmp_path / "d"))
    assert not os.path.exists(tmp_path / "d")


@pytest.fixture(scope="module")
def spoken_digit(tmp_path_factory, prepare_fake_spoken_digit):
    return prepare_fake_spoken_digit(tmp_path_factory.mktemp("fsdd"),
                                     tmp_path_factory.mktemp("tfds"))


def test_catalog_dataset_takes_rate_and_length_from_its_features(spoken_digit):
    assert spoken_digit.sample_rate == 8000
    assert spoken_digit.class_names == [str(d) for d in range(10)]
    assert 5000 < spoken_digit.num_samples < 6000  # the longest clip, in samples
    x, y = next(iter(spoken_digit.load(spoken_digit.tasks[0], "train", 8)))
    assert x.shape == (8, spoken_digit.num_samples) and x.dtype == "float32"
    assert 0.3 < float(np.abs(x).max()) <= 0.41  # int16 PCM scaled back to [-1, 1]


def test_catalog_train_only_dataset_gets_disjoint_stratified_folds(spoken_digit):
    assert [t.name for t in spoken_digit.tasks] == [f"fold{k}" for k in range(1, 6)]
    assert spoken_digit.fold_assignment == folds.FOLD_ASSIGNMENT == "stratified-v2"
    train = spoken_digit.builder.as_dataset(split="train", shuffle_files=False)
    labels = np.array([example["label"] for example in tfds.as_numpy(train)])
    indices = {str(d): np.flatnonzero(labels == d).tolist() for d in range(10)}
    fold_of = folds.stratified_folds(indices, 5)
    np.testing.assert_array_equal(spoken_digit.fold_of_example,
                                  [fold_of[i] for i in range(len(labels))])
    everything = set()
    for task in spoken_digit.tasks:
        def clips(part):
            return {x.numpy().tobytes() for xs, _ in spoken_digit.load(task, part, 16) for x in xs}
        test, train = clips("test"), clips("train")
        assert len(test) == 10 and len(train) == 40  # 1 and 4 clips of each digit
        assert not test & train
        everything |= test
    assert len(everything) == 50  # every clip is tested exactly once


def test_shuffle_buffer_is_bounded_in_bytes_and_every_epoch_is_reshuffled(spoken_digit,
                                                                          monkeypatch):
    audio = spoken_digit.builder.info.features["audio"]
    clip_bytes = spoken_digit.num_samples * np.dtype(audio.np_dtype).itemsize
    monkeypatch.setattr(data, "SHUFFLE_BUFFER_BYTES", 20 * clip_bytes)
    assert spoken_digit.shuffle_buffer() == 20
    monkeypatch.setattr(data, "SHUFFLE_BUFFER_BYTES", 2 * clip_bytes)
    assert spoken_digit.shuffle_buffer() == 16  # never fewer than 16 examples

    ds = spoken_digit.load(spoken_digit.tasks[0], "train", 8, shuffle=True, seed=0)
    first, second = ([x.numpy().tobytes() for xs, _ in ds for x in xs] for _ in range(2))
    assert len(first) == len(set(first)) == 40 and set(first) == set(second)
    assert first != second


@pytest.fixture(scope="module")
def folder_source(make_sounds):
    work = make_sounds(files_per_class=4)  # 3 classes x 4 files, 0.4-0.5 s: one clip each
    return datasets.open_source("audio_folder", str(work / "tfds"), audio_dir=str(work / "audio"),
                                sample_rate=8000, clip_seconds=0.5, num_folds=3)


@pytest.mark.parametrize("part", ["train", "test"])
@pytest.mark.parametrize("copies", [False, True])
@pytest.mark.parametrize("drop_remainder", [False, True])
def test_batches_keep_their_cardinality(spoken_digit, folder_source, part, copies,
                                        drop_remainder):
    # Keras's progress bar shows `steps/Unknown` in the first epoch without it.
    sources = [(spoken_digit, spoken_digit.tasks[1], {"train": 40, "test": 10}),
               (folder_source, folder_source.tasks[0], None)]
    for source, task, examples in sources:
        if examples is None:  # Fold splits: TFDS knows their sizes.
            examples = {p: source.builder.info.splits[getattr(task, p)].num_examples
                        for p in ("train", "test")}
        clips = examples[part] * (2 if copies else 1)
        ds = source.load(task, part, 3, shuffle=True, flags=copies, copies=copies,
                         drop_remainder=drop_remainder)
        batches = clips // 3 if drop_remainder else -(-clips // 3)
        assert int(ds.cardinality()) == batches
        assert sum(1 for _ in ds) == batches


def test_source_lists_the_suspect_files_its_builder_kept(make_sounds):
    work = make_sounds(classes=("a", "b"), files_per_class=2)
    sf.write(work / "audio" / "b" / "silent.wav", np.zeros(4000), 8000)
    source = datasets.open_source("audio_folder", str(work / "tfds"), audio_dir=str(work / "audio"),
                                  sample_rate=8000, num_folds=2)
    assert source.suspect_files == {"b/silent.wav": "every sample is zero"}
    assert datasets.suspect_files(source.builder) == source.suspect_files


def _digest(lines):
    return hashlib.sha256("".join(f"{line}\n" for line in sorted(lines)).encode()).hexdigest()


@pytest.fixture(scope="module")
def long_files(tmp_path_factory):
    """An audio folder prepared with 0.5 s clips: 1.2 s files give clips 0 and 1 (2 folds)."""
    work = tmp_path_factory.mktemp("long")
    folder_fake.write_fake_audio_folder(work / "audio", classes=("a", "b"), files_per_class=4,
                                        seconds=(0.3, 1.2), formats=("wav",))
    source = datasets.open_source("audio_folder", str(work / "tfds"), audio_dir=str(work / "audio"),
                                  sample_rate=8000, clip_seconds=0.5, num_folds=2)
    return work, source


def test_data_record_of_an_audio_folder_names_its_clips_and_test_files(long_files):
    work, source = long_files
    clips = {}  # (filename, clip index) of every clip, by fold
    for fold in (1, 2):
        ds = source.builder.as_dataset(split=f"fold{fold}")
        clips[fold] = [(e["filename"].decode(), int(e["clip_index"])) for e in tfds.as_numpy(ds)]
    assert max(index for c in clips.values() for _, index in c) >= 1  # long files: 2 clips
    for task, (train, test) in zip(source.tasks, [(2, 1), (1, 2)]):
        record = source.data_record(task)
        assert json.loads(json.dumps(record)) == record
        assert {k: record[k] for k in ("dataset", "config", "version", "task", "carved_fold")} == {
            "dataset": "audio_folder", "config": source.builder.info.config_name,
            "version": "1.0.0", "task": task.name, "carved_fold": None}
        assert record["parts"] == {
            part: {"split": f"fold{fold}", "num_examples": len(clips[fold]),
                   "fingerprint": _digest(f"{name}:{index}" for name, index in clips[fold])}
            for part, fold in (("train", train), ("test", test))}
        assert record["test_files"] == sorted({name for name, _ in clips[test]})
    first, second = (source.data_record(task) for task in source.tasks)
    assert first["parts"]["test"]["fingerprint"] != second["parts"]["test"]["fingerprint"]


def test_data_record_decodes_no_audio_and_logs_no_deprecation(long_files):
    work, source = long_files
    fresh = datasets.open_prepared(str(work / "tfds"), "audio_folder",
                                   source.builder.info.config_name, "1.0.0")
    with mock.patch.object(common.BytesAudio, "decode_example", side_effect=AssertionError), \
            mock.patch.object(feature_lib, "log_tf_warning") as deprecated:
        assert fresh.data_record(fresh.tasks[0]) == source.data_record(source.tasks[0])
    deprecated.assert_not_called()  # "`FeatureConnector.dtype` is deprecated"


def test_data_record_of_carved_folds_hashes_the_audio_of_their_examples(spoken_digit):
    train = spoken_digit.builder.as_dataset(split="train", shuffle_files=False)
    hashes = np.array([hashlib.sha256(e["audio"].tobytes()).hexdigest()
                       for e in tfds.as_numpy(train)])
    fingerprints = set()
    for task in spoken_digit.tasks:
        record = spoken_digit.data_record(task)
        in_fold = spoken_digit.fold_of_example == task.fold
        assert record["carved_fold"] == task.fold and "test_files" not in record
        assert (record["dataset"], record["config"]) == ("tfds:spoken_digit", None)
        assert record["parts"] == {
            "train": {"split": "train", "num_examples": 40,
                      "fingerprint": _digest(hashes[~in_fold])},
            "test": {"split": "train", "num_examples": 10, "fingerprint": _digest(hashes[in_fold])},
        }
        fingerprints.add(record["parts"]["test"]["fingerprint"])
    assert len(fingerprints) == 5


def test_open_prepared_reads_an_audio_folder_that_is_gone(tmp_path):
    folder_fake.write_fake_audio_folder(tmp_path / "audio", classes=("a", "b"), files_per_class=3,
                                        seconds=0.1, formats=("wav",))
    sf.write(tmp_path / "audio" / "a" / "silent.wav", np.zeros(800), 8000)
    source = datasets.open_source("audio_folder", str(tmp_path / "tfds"),
                                  audio_dir=str(tmp_path / "audio"), sample_rate=8000, num_folds=2)
    records = [source.data_record(task) for task in source.tasks]
    shutil.rmtree(tmp_path / "audio")
    record = records[0]
    again = datasets.open_prepared(str(tmp_path / "tfds"), record["dataset"], record["config"],
                                   record["version"])
    for field in ("name", "sample_rate", "num_samples", "class_names", "tasks", "skipped_files",
                  "suspect_files", "audio_key", "label_key", "fold_assignment"):
        assert getattr(again, field) == getattr(source, field), field
    assert again.suspect_files == {"a/silent.wav": "every sample is zero"}
    assert [again.data_record(task) for task in again.tasks] == records
    before, after = (next(iter(s.load(s.tasks[0], "test", 8))) for s in (source, again))
    np.testing.assert_array_equal(before[0], after[0])


def test_open_prepared_gives_carved_folds_as_open_source_does(spoken_digit, tmp_path):
    record = spoken_digit.data_record(spoken_digit.tasks[2])
    data_dir = os.path.dirname(os.path.dirname(os.fspath(spoken_digit.builder.data_dir)))
    again = datasets.open_prepared(data_dir, record["dataset"], record["config"], record["version"])
    assert again.tasks == spoken_digit.tasks
    assert again.fold_assignment == spoken_digit.fold_assignment == folds.FOLD_ASSIGNMENT
    np.testing.assert_array_equal(again.fold_of_example, spoken_digit.fold_of_example)
    assert again.num_samples == spoken_digit.num_samples
    assert again.data_record(again.tasks[2]) == record
    with pytest.raises(AudioDataError) as error:
        datasets.open_prepared(str(tmp_path), "gtzan/fault_filtered", "fault_filtered", "1.0.0")
    assert str(error.value) == (
        f"dataset gtzan/fault_filtered, config fault_filtered, version 1.0.0 is not prepared in "
        f"{tmp_path} (no {tmp_path}/gtzan/fault_filtered/1.0.0); prepare it again from its "
        "source data with the same options")


@pytest.mark.parametrize("dataset, rates", [
    ("esc50", (16000, 32000, 44100)),
    ("esc50/32000hz", (32000,)),
    ("urbansound8k", (16000, 22050, 32000, 44100)),
    ("urbansound8k/44100hz", (44100,)),
    ("gtzan", (16000, 22050, 32000)),
    ("gtzan/fault_filtered", (16000, 22050, 32000)),
    ("gtzan/folds_16000hz", (16000,)),
    ("audio_folder", None),  # any rate: its files are resampled to it
    ("tfds:spoken_digit", None),  # its builder says; open_source refuses another
])
def test_available_rates_are_told_without_making_a_builder_and_each_is_served(
        dataset, rates, tmp_path):
    with mock.patch.object(tfds_builders, "builder", side_effect=AssertionError), \
            mock.patch.object(tfds, "builder", side_effect=AssertionError):
        assert datasets.available_rates(dataset) == rates
    for rate in rates or ():
        audio = datasets.make_builder(dataset, str(tmp_path), sample_rate=rate).info.features["audio"]
        assert audio.sample_rate == rate
    with pytest.raises(AudioDataError, match="unknown dataset 'esc5'"):
        datasets.available_rates("esc5")


@pytest.mark.parametrize("dataset, rate, config", [
    ("esc50", None, "44100hz"),  # train.py --dataset=esc50: 44.1 kHz, as before
    ("esc50", 44100, "44100hz"),
    ("esc50", 32000, "32000hz"),
    ("esc50/16000hz", 16000, "16000hz"),
    ("urbansound8k", None, "22050hz"),
    ("urbansound8k", 16000, "16000hz"),
    ("urbansound8k/44100hz", 44100, "44100hz"),
    ("gtzan", 32000, "folds_32000hz"),
    ("gtzan/fault_filtered", None, "fault_filtered"),
    ("gtzan/fault_filtered", 22050, "fault_filtered"),
    ("gtzan/fault_filtered", 32000, "fault_filtered_32000hz"),
    ("gtzan/fault_filtered_16000hz", 16000, "fault_filtered_16000hz"),
])
def test_a_rate_picks_the_config_of_the_named_protocol_at_that_rate(dataset, rate, config,
                                                                    tmp_path):
    builder = datasets.make_builder(dataset, str(tmp_path), sample_rate=rate)
    assert builder.builder_config.name == config
    seconds = {"esc50": 5, "urbansound8k": 4, "gtzan": 30}[builder.name]
    audio = builder.info.features["audio"]
    assert audio.shape == (seconds * audio.sample_rate,)
    assert audio.sample_rate == (rate or builder.builder_config.sample_rate)
    # The protocol is the named one's, at every rate, known before preparation.
    chosen = datasets.planned_tasks(f"{builder.name}/{config}")
    assert chosen == datasets.planned_tasks(dataset)
    assert [t.name for t in chosen] == (["test"] if "fault_filtered" in config else
                                        [f"fold{k}" for k in range(1, len(chosen) + 1)])
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("dataset, rate, message", [
    ("urbansound8k/44100hz", 32000,
     "dataset 'urbansound8k/44100hz' names clips at 44100 Hz but the model needs 32000 Hz; use "
     "urbansound8k/32000hz, or leave the rate out of the name (urbansound8k)"),
    ("gtzan/fault_filtered_16000hz", 32000,
     "dataset 'gtzan/fault_filtered_16000hz' names clips at 16000 Hz but the model needs "
     "32000 Hz; use gtzan/fault_filtered_32000hz, or leave the rate out of the name "
     "(gtzan/fault_filtered)"),
    ("esc50", 22050,
     "dataset 'esc50' has no config at 22050 Hz, the rate the model needs; it is offered at "
     "16000, 32000 or 44100 Hz: use a model (or --sample_rate) at one of those rates"),
    ("gtzan/fault_filtered", 44100,
     "dataset 'gtzan/fault_filtered' has no config at 44100 Hz, the rate the model needs; it is "
     "offered at 16000, 22050 or 32000 Hz: use a model (or --sample_rate) at one of those rates"),
    ("esc50/22050hz", None,
     "unknown dataset 'esc50/22050hz': esc50 has no config '22050hz'; choose one of "
     "esc50/44100hz, esc50/32000hz, esc50/16000hz"),
])
def test_a_rate_a_dataset_cannot_be_had_at_is_one_line_before_anything_is_written(
        dataset, rate, message, tmp_path):
    for make in (datasets.open_source, datasets.make_builder):
        with pytest.raises(AudioDataError) as error:
            make(dataset, str(tmp_path / "d"), sample_rate=rate)
        assert str(error.value) == message
    assert not (tmp_path / "d").exists()


def test_a_catalog_dataset_at_another_rate_is_refused_before_its_preparation(spoken_digit,
                                                                             tmp_path):
    with pytest.raises(AudioDataError) as error:  # offline: a download would fail otherwise
        datasets.open_source("tfds:spoken_digit", str(tmp_path / "d"), sample_rate=16000)
    assert str(error.value) == (
        "dataset 'tfds:spoken_digit' holds clips at 8000 Hz but the model needs 16000 Hz, and "
        "TFDS prepares a catalog dataset without resampling it; copy its audio into a folder "
        "with one sub-folder per class and use --dataset=audio_folder --audio_dir=PATH "
        "--sample_rate=16000")
    assert not (tmp_path / "d").exists()
    data_dir = os.fspath(spoken_digit.builder.data_dir_root)
    again = datasets.open_source("tfds:spoken_digit", data_dir, sample_rate=8000)  # its own rate
    assert again.builder.data_dir == spoken_digit.builder.data_dir


@pytest.fixture(scope="module")
def esc50_at_two_rates(tmp_path_factory):
    """The dummy ESC-50 prepared as `esc50` and for a model at 32 kHz, in one data_dir."""
    data_dir = tmp_path_factory.mktemp("tfds")
    default = datasets.open_source("esc50", str(data_dir), str(ESC50_DUMMY))
    at_32k = datasets.open_source("esc50", str(data_dir), str(ESC50_DUMMY), sample_rate=32000)
    return data_dir, default, at_32k


def test_esc50_for_a_model_at_32_khz_is_its_32000hz_config_beside_the_papers(esc50_at_two_rates):
    data_dir, default, at_32k = esc50_at_two_rates
    assert (default.sample_rate, default.num_samples) == (44100, 220500)
    assert (at_32k.sample_rate, at_32k.num_samples) == (32000, 160000)
    assert os.fspath(default.builder.data_dir) == str(data_dir / "esc50" / "44100hz" / "1.1.0")
    assert os.fspath(at_32k.builder.data_dir) == str(data_dir / "esc50" / "32000hz" / "1.1.0")
    assert at_32k.name == "esc50" and at_32k.tasks == default.tasks
    for task in default.tasks:  # the same clips in each fold, at another rate
        record, record_32k = default.data_record(task), at_32k.data_record(task)
        assert (record_32k["config"], record_32k["version"]) == ("32000hz", "1.1.0")
        assert record_32k["parts"] == record["parts"]
        assert record_32k["test_files"] == record["test_files"]
    x, _ = next(iter(at_32k.load(at_32k.tasks[0], "test", 3)))
    assert x.shape == (3, 160000)


def _as_prepared_before_configs(version_dir, data_dir):
    """A copy of ESC-50's 44100hz data as version 1.0.0 wrote it, before the builder had
    configs: in `<data_dir>/esc50/1.0.0/`, its dataset_info.json without a config and at
    1.0.0 (all that differs from a preparation by 1.0.0's code, compared on dummy_data)."""
    legacy = data_dir / "esc50" / "1.0.0"
    shutil.copytree(version_dir, legacy)
    info = json.loads((legacy / "dataset_info.json").read_text())
    del info["configName"], info["configDescription"]
    info.update(version="1.0.0", releaseNotes={"1.0.0": info["releaseNotes"]["1.0.0"]})
    (legacy / "dataset_info.json").write_text(json.dumps(info))
    return legacy


def test_esc50_prepared_before_its_configs_still_opens_and_its_models_still_check(
        esc50_at_two_rates):
    data_dir, default, at_32k = esc50_at_two_rates
    legacy = _as_prepared_before_configs(os.fspath(default.builder.data_dir), data_dir)
    old = datasets.open_prepared(str(data_dir), "esc50", None, "1.0.0")  # an old record's data
    assert os.fspath(old.builder.data_dir) == str(legacy)
    for field in ("sample_rate", "num_samples", "class_names", "tasks"):
        assert getattr(old, field) == getattr(default, field), field
    # open_source goes on using the 44100hz config beside it.
    again = datasets.open_source("esc50", str(data_dir), str(ESC50_DUMMY))
    assert again.builder.data_dir == default.builder.data_dir

    # A model trained on 1.0.0 recorded config None: 44100hz holds those examples.
    for task in old.tasks:
        recorded = {"data": old.data_record(task)}
        assert (recorded["data"]["config"], recorded["data"]["version"]) == (None, "1.0.0")
        assert provenance.problem("run", recorded, default, task) is None
        assert provenance.problem("run", recorded, at_32k, task) == (
            "run was trained on other data than esc50 holds now: prepared as config None "
            "then, 32000hz now; prepared as version 1.0.0 then, 1.1.0 now")
    # Only for the examples of 1.0.0, and still only if they are the same clips.
    recorded["data"]["parts"]["test"]["fingerprint"] = "0" * 64
    assert "its test part differs" in provenance.problem("run", recorded, default, task)
    # A model of another rate is refused, although its clips have the same file names.
    recorded = {"data": at_32k.data_record(task)}
    assert provenance.problem("run", recorded, default, task) == (
        "run was trained on other data than esc50 holds now: prepared as config 32000hz "
        "then, 44100hz now")
