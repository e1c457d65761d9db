"""Every dataset through train.py and evaluate.py, each with its own protocol."""

import json
import os
import shutil

import pytest
import tensorflow as tf

from keras_audio_cnn import datasets
from tfds_builders import folds
from tfds_builders.audio_folder import fake_data as folder_fake
from tfds_builders.gtzan import fake_data as gtzan_fake
from tfds_builders.gtzan import gtzan_dataset_builder
from tfds_builders.urbansound8k import fake_data as us8k_fake



def fault_filtered_sample(per_genre):
    """Ids of every genre from each fault-filtered list: {split: ids per genre}."""
    lists = gtzan_dataset_builder.read_fault_filtered()
    return [
        clip_id
        for split, count in per_genre.items()
        for genre in gtzan_dataset_builder.GENRES
        for clip_id in [i for i in lists[split] if i.startswith(genre + ".")][:count]
    ]


@pytest.fixture
def train_and_evaluate(tmp_path, run_cli, read_json, tiny_model):
    """`train_and_evaluate(*flags, evaluate=True)`: a tiny run in tmp_path without
    augmentation, and evaluate.py on it reproducing its accuracies."""

    def train(*flags, evaluate=True):
        model_dir = str(tmp_path / "model")
        common = [f"--data_dir={tmp_path / 'tfds'}", f"--model_dir={model_dir}"]
        stdout = run_cli("train.py", *tiny_model, "--augment=none", *common, *flags).stdout
        summary = read_json(model_dir, "summary.json")
        if evaluate:
            stdout += run_cli("evaluate.py", f"--model_dir={model_dir}").stdout
            evaluation = read_json(model_dir, "evaluation.json")
            assert evaluation["accuracy"] == summary["accuracy"]  # reproduced from the files
        return model_dir, summary, stdout

    return train


def test_urbansound8k_end_to_end_on_a_generated_archive(tmp_path, train_and_evaluate, read_json):
    manual = tmp_path / "manual"
    us8k_fake.write_fake_urbansound8k(manual, classes=range(10), folds=range(1, 11),
                                      clips_per_fold_per_class=1, seconds=1.0, as_tar=True)
    model_dir, summary, _ = train_and_evaluate(
        "--dataset=urbansound8k", f"--manual_dir={manual}", "--folds=3",
        evaluate=False)  # evaluate.py is the same for every dataset: tested on the others
    assert list(summary["accuracy"]) == ["fold3"]
    assert (summary["sample_rate"], summary["num_samples"]) == (22050, 88200)
    metrics = read_json(model_dir, "fold3", "metrics.json")
    assert metrics["train_split"] == "+".join(f"fold{k}" for k in range(1, 11) if k != 3)
    assert metrics["num_examples"] == 10
    assert summary["class_names"][3] == "dog_bark"


def test_gtzan_fault_filtered_trains_on_train_validates_on_valid_reports_test(
        tmp_path, train_and_evaluate, read_json):
    ids = fault_filtered_sample({"train": 2, "valid": 1, "test": 1})
    manual = tmp_path / "manual"
    gtzan_fake.write_fake_gtzan(manual, layout="genres_original", ids=ids,
                                corrupt=("jazz.00054",), seconds=0.5)
    model_dir, summary, stdout = train_and_evaluate(
        "--dataset=gtzan/fault_filtered", f"--manual_dir={manual}")
    assert list(summary["accuracy"]) == ["test"]
    assert summary["skipped_files"] == ["jazz.00054.wav"]
    assert "jazz.00054.wav" in stdout
    with open(os.path.join(model_dir, "summary.md")) as f:
        assert "jazz.00054.wav" in f.read()
    metrics = read_json(model_dir, "test", "metrics.json")
    assert (metrics["train_split"], metrics["valid_split"], metrics["test_split"]) == (
        "train", "valid", "test")
    assert metrics["num_examples"] == 10
    with open(os.path.join(model_dir, "test", "history.csv")) as f:
        assert "val_accuracy" in f.readline()
    # 30 s clips give the paper's 128 x 1500 image, derived from the clip length.
    assert (summary["sample_rate"], summary["num_samples"]) == (22050, 661500)
    model = tf.keras.models.load_model(os.path.join(model_dir, "test", "model.keras"))
    assert model.get_layer("logmel_image").output.shape == (None, 128, 1500, 3)


def test_folds_flag_is_refused_for_a_fixed_split_protocol(tmp_path, run_cli, tiny_model):
    result = run_cli("train.py", "--dataset=gtzan/fault_filtered", "--folds=1", *tiny_model,
                     f"--manual_dir={tmp_path}", f"--data_dir={tmp_path / 'd'}",
                     f"--model_dir={tmp_path / 'm'}", check=False)
    assert result.returncode != 0 and "train.py: error:" in result.stderr
    assert not os.path.exists(tmp_path / "m")


def test_audio_folder_end_to_end_with_cache(tmp_path, train_and_evaluate, read_json, run_cli,
                                           tiny_model, assert_one_line_error):
    audio_dir = tmp_path / "my_sounds"
    folder_fake.write_fake_audio_folder(audio_dir, classes=("bird", "cat", "dog"),
                                        files_per_class=5, seconds=(0.5, 1.0),
                                        formats=("wav", "flac", "ogg"))
    flags = ["--dataset=audio_folder", f"--audio_dir={audio_dir}", "--folds=1",
             "--num_folds=5", "--sample_rate=16000"]
    model_dir, summary, _ = train_and_evaluate(*flags)
    assert summary["class_names"] == ["bird", "cat", "dog"]
    assert summary["sample_rate"] == 16000
    # Each file's fold is a hash of its path: fold 1 holds those whose hash says 1.
    paths = [p.relative_to(audio_dir).as_posix() for p in audio_dir.glob("*/[!.]*")]
    in_fold1 = [p for p, fold in folds.file_folds(paths, 5).items() if fold == 1]
    metrics = read_json(model_dir, "fold1", "metrics.json")
    assert metrics["num_examples"] == len(in_fold1) > 0
    assert metrics["data"]["test_files"] == sorted(in_fold1)
    served = tf.saved_model.load(os.path.join(model_dir, "fold1", "saved_model"))
    assert [n.decode() for n in served.class_names().numpy()] == ["bird", "cat", "dog"]
    prepared = os.listdir(tmp_path / "tfds" / "audio_folder")
    assert len(prepared) == 1  # evaluate.py reused train.py's preparation

    # A file added to the folder joins fold 1's training or test part: evaluating the
    # model on the grown folder, or keeping it in a rerun, would mix partitions.
    extra = audio_dir / "dog" / "extra.wav"
    extra.write_bytes(next((audio_dir / "dog").glob("*.wav")).read_bytes())
    changed = ("test files: 1 added, 0 removed, e.g. dog/extra.wav"
               if folds.file_folds(["dog/extra.wav"], 5)["dog/extra.wav"] == 1
               else "its train part differs")
    result = run_cli("evaluate.py", f"--model_dir={model_dir}", check=False)
    assert_one_line_error(result, "evaluate.py", f"{model_dir}/fold1 was trained on other data "
                          "than audio_folder holds now", changed, "--overwrite")
    result = run_cli("train.py", *tiny_model, "--augment=none", f"--data_dir={tmp_path / 'tfds'}",
                     f"--model_dir={model_dir}", *flags, check=False)
    assert_one_line_error(result, "train.py", "was trained on other data", changed,
                          "--overwrite")
    assert len(os.listdir(tmp_path / "tfds" / "audio_folder")) == 2  # the grown folder's

    # The folder gone: evaluate.py reads the data prepared from it for training.
    shutil.move(audio_dir, tmp_path / "elsewhere")
    result = run_cli("evaluate.py", f"--model_dir={model_dir}")
    assert f"{audio_dir} is gone: evaluating on the data prepared from it" in result.stdout
    assert read_json(model_dir, "evaluation.json")["accuracy"] == summary["accuracy"]


def test_tfds_catalog_dataset_end_to_end(tmp_path, train_and_evaluate, read_json, run_cli,
                                         assert_one_line_error, prepare_fake_spoken_digit):
    # Prepared here with its download mocked; the CLIs then find it prepared.
    prepare_fake_spoken_digit(tmp_path / "fsdd", tmp_path / "tfds")
    model_dir, summary, _ = train_and_evaluate("--dataset=tfds:spoken_digit", "--folds=2")
    assert list(summary["accuracy"]) == ["fold2"]
    assert summary["sample_rate"] == 8000 and summary["class_names"][0] == "0"
    path = os.path.join(model_dir, "fold2", "metrics.json")
    metrics = read_json(path)
    assert (metrics["train_split"], metrics["carved_fold"], metrics["num_examples"]) == (
        "train", 2, 10)
    assert metrics["fold_assignment"] == folds.FOLD_ASSIGNMENT

    # A model whose folds were dealt another way (as before tfds_builders.folds) held
    # out other clips: evaluating it on this fold 2 would test it on its training data.
    del metrics["fold_assignment"]
    with open(path, "w") as f:
        json.dump(metrics, f)
    result = run_cli("evaluate.py", f"--model_dir={model_dir}", check=False)
    assert_one_line_error(result, "evaluate.py", "fold2", "dealt by an earlier version",
                          "retrain it")


def _filenames(builder, split):
    ds = builder.as_dataset(split=split, shuffle_files=False)
    return [f.decode() for f in ds.map(lambda e: e["filename"]).as_numpy_iterator()]


@pytest.mark.parametrize("name, writer", [
    ("esc50", None),
    ("urbansound8k", lambda root: us8k_fake.write_fake_urbansound8k(
        root, classes=range(4), clips_per_fold_per_class=2)),
    ("gtzan", lambda root: gtzan_fake.write_fake_gtzan(root, clips_per_genre=10)),
    ("gtzan/fault_filtered", lambda root: gtzan_fake.write_fake_gtzan(
        root, ids=fault_filtered_sample({"train": 2, "valid": 1, "test": 1}))),
    ("audio_folder", None),
])
def test_no_clip_is_in_both_a_models_training_and_evaluation_data(tmp_path, name, writer):
    manual = tmp_path / "manual"
    options = {}
    if name == "esc50":
        from tfds_builders.esc50 import fake_data as esc50_fake

        esc50_fake.write_fake_esc50(manual, classes=range(0, 50, 10), clips_per_fold_per_class=2)
    elif name == "audio_folder":
        folder_fake.write_fake_audio_folder(manual, files_per_class=10, seconds=(0.5, 3.0))
        options = dict(audio_dir=str(manual), clip_seconds=1.0)
    else:
        writer(manual)
    source = datasets.open_source(name, str(tmp_path / "tfds"), str(manual), **options)
    tested = []
    for task in source.tasks:
        train_files = set(_filenames(source.builder, task.train))
        test_files = set(_filenames(source.builder, task.test))
        valid_files = set(_filenames(source.builder, task.valid)) if task.valid else set()
        assert train_files and test_files
        assert not train_files & test_files and not valid_files & (train_files | test_files)
        tested += test_files
        if name == "urbansound8k":  # and no recording (fsID) straddles them
            ds = source.builder.as_dataset(split=task.train)
            train_ids = {int(i) for i in ds.map(lambda e: e["fsID"]).as_numpy_iterator()}
            ds = source.builder.as_dataset(split=task.test)
            test_ids = {int(i) for i in ds.map(lambda e: e["fsID"]).as_numpy_iterator()}
            assert not train_ids & test_ids
    if source.tasks[0].name.startswith("fold"):
        assert len(tested) == len(set(tested))  # every file is tested by exactly one model
