"""Protocols from splits, carved folds, and a TFDS catalog dataset through data.py."""

import os
from unittest import mock

import numpy as np
import pytest
import soundfile as sf
import tensorflow_datasets as tfds

from keras_audio_cnn import data
from tfds_builders import folds
from tfds_builders.audio_io import AudioDataError


class FakeBuilder:
    def __init__(self, *splits):
        self.name = "fake"
        self.info = mock.Mock(splits={s: None for s in splits})


def test_fold_splits_give_one_task_per_fold():
    tasks = data.protocol(FakeBuilder("fold3", "fold1", "fold2", "fold10"))
    assert [t.name for t in tasks] == ["fold1", "fold2", "fold3", "fold10"]
    assert tasks[0].train == "fold2+fold3+fold10" and tasks[0].test == "fold1"
    assert tasks[3].train == "fold1+fold2+fold3" and tasks[3].test == "fold10"


def test_train_valid_test_splits_give_one_task():
    (task,) = data.protocol(FakeBuilder("train", "valid", "test"))
    assert (task.name, task.train, task.valid, task.test) == ("test", "train", "valid", "test")
    (task,) = data.protocol(FakeBuilder("train", "validation", "test"))
    assert task.valid == "validation"


def test_train_only_gives_carved_folds_and_no_split_is_an_error():
    tasks = data.protocol(FakeBuilder("train"))
    assert [(t.name, t.fold) for t in tasks] == [(f"fold{k}", k) for k in range(1, 6)]
    with pytest.raises(AudioDataError, match="neither fold1..foldN nor train/test"):
        data.protocol(FakeBuilder("extra"))


def test_unknown_dataset_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(AudioDataError, match="unknown dataset 'nope'.*esc50"):
        data.open_source("nope", str(tmp_path / "d"))
    with pytest.raises(AudioDataError, match="needs --audio_dir"):
        data.open_source("audio_folder", str(tmp_path / "d"))
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
    return data.open_source("audio_folder", str(work / "tfds"), audio_dir=str(work / "audio"),
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
    source = data.open_source("audio_folder", str(work / "tfds"), audio_dir=str(work / "audio"),
                              sample_rate=8000, num_folds=2)
    assert source.suspect_files == {"b/silent.wav": "every sample is zero"}
    assert data.suspect_files(source.builder) == source.suspect_files
