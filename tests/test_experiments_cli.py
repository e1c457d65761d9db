"""Runs, ensembles across model dirs, gradient maps, reports and reproducibility."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf


@pytest.fixture(scope="module")
def two_runs(sounds, run_cli, tiny_model, folder_flags):
    def train(name, *flags):
        model_dir = str(sounds / name)
        run_cli("train.py", *tiny_model, *folder_flags(sounds), f"--model_dir={model_dir}",
                *flags)
        return model_dir

    # a: two runs holding fold 1 out; b: one model holding fold 2 out; c: b again.
    a = train("a", "--folds=1", "--runs=2", "--augment=paper,specaugment")
    b_flags = ["--folds=2", "--seed=7", "--deterministic", "--augment=paper,specaugment,mixup"]
    return a, train("b", *b_flags), train("c", *b_flags)


def test_runs_get_their_own_directories_and_seeds(two_runs, read_json):
    a, _, _ = two_runs
    assert [read_json(a, "fold1", f"run{r}", "metrics.json")["seed"] for r in (1, 2)] == [1, 1001]
    assert set(read_json(a, "summary.json")["accuracy"]) == {"fold1/run1", "fold1/run2"}


def test_ensemble_across_model_dirs_uses_only_models_that_held_the_fold_out(two_runs, tmp_path, run_cli, read_json):
    a, b, c = two_runs
    out = tmp_path / "ensemble"
    result = run_cli("evaluate.py", f"--model_dir={a}", f"--model_dir={b}", f"--model_dir={c}",
                     f"--output_dir={out}", "--saliency=1")
    evaluation = read_json(out, "evaluation.json")
    tasks = evaluation["tasks"]
    assert tasks["fold1"]["models"] == ["a/fold1/run1", "a/fold1/run2"]
    assert tasks["fold2"]["models"] == ["b/fold2", "c/fold2"]
    assert "fold3" not in tasks  # nobody held fold 3 out
    for task in tasks.values():
        runs = np.array(list(task["run_accuracy"].values()))
        assert task["run_mean"] == pytest.approx(runs.mean())
        assert task["run_std"] == pytest.approx(runs.std())
        assert 0.0 <= task["accuracy"] <= 1.0 and sum(map(sum, task["confusion_matrix"])) == 6
    # each model's own accuracy equals what train.py measured on the same clips
    assert tasks["fold2"]["run_accuracy"]["b/fold2"] == read_json(b, "fold2", "metrics.json")["accuracy"]
    assert "ensemble of 2" in result.stdout

    report = (out / "report.md").read_text()
    for link in [line.split("](")[1].rstrip(")") for line in report.splitlines() if "](" in line]:
        assert (out / link).is_file(), link
    figures = sorted((out / "saliency").rglob("*.png"))
    assert len(figures) == 6  # 1 clip of each of 3 classes, for folds 1 and 2
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in figures)


def test_a_model_that_trained_on_the_test_fold_is_refused(two_runs, tmp_path, run_cli):
    a, b, _ = two_runs
    leaky = tmp_path / "leaky"
    shutil.copytree(b, leaky)
    path = leaky / "fold2" / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["train_split"] = "fold1+fold2+fold3"
    path.write_text(json.dumps(metrics))
    result = run_cli("evaluate.py", f"--model_dir={a}", f"--model_dir={leaky}",
                     f"--output_dir={tmp_path / 'out'}", check=False)
    assert result.returncode != 0
    assert "would be tested on clips it trained on" in result.stderr.splitlines()[-1]


def test_an_audio_folder_model_that_recorded_no_data_is_refused(two_runs, tmp_path, run_cli,
                                                                assert_one_line_error):
    # Before models recorded their data, an audio folder's folds were dealt round robin;
    # today's folds (a hash of each path) would test such a model on clips it trained on.
    _, b, _ = two_runs
    old = tmp_path / "old"
    shutil.copytree(b, old)
    path = old / "fold2" / "metrics.json"
    metrics = json.loads(path.read_text())
    del metrics["data"]
    path.write_text(json.dumps(metrics))
    result = run_cli("evaluate.py", f"--model_dir={old}", check=False)
    assert_one_line_error(result, "evaluate.py", f"{old}/fold2 was trained before models "
                          "recorded their data", "train it again")


def test_mismatched_datasets_or_classes_are_refused(two_runs, tmp_path, run_cli):
    a, b, _ = two_runs
    other = tmp_path / "other"
    shutil.copytree(b, other)
    run = json.loads((other / "run.json").read_text())
    (other / "run.json").write_text(json.dumps(dict(run, dataset="esc50")))
    result = run_cli("evaluate.py", f"--model_dir={a}", f"--model_dir={other}", check=False)
    assert result.returncode != 0 and "different datasets" in result.stderr.splitlines()[-1]

    renamed = tmp_path / "renamed"
    shutil.copytree(b, renamed)
    path = renamed / "fold2" / "metrics.json"
    metrics = json.loads(path.read_text())
    path.write_text(json.dumps(dict(metrics, class_names=["bird", "cat", "cow"])))
    result = run_cli("evaluate.py", f"--model_dir={a}", f"--model_dir={renamed}",
                     f"--output_dir={tmp_path / 'out'}", check=False)
    assert result.returncode != 0 and "other classes" in result.stderr.splitlines()[-1]


def test_deterministic_runs_are_bit_identical_and_inference_has_no_augmentation(two_runs):
    _, b, c = two_runs
    one = tf.keras.models.load_model(os.path.join(b, "fold2", "model.keras"))
    two = tf.keras.models.load_model(os.path.join(c, "fold2", "model.keras"))
    for x, y in zip(one.get_weights(), two.get_weights()):
        np.testing.assert_array_equal(x, y)
    assert not [layer for layer in one.layers if "augment" in layer.name]
    clip = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 4000)).astype("float32")
    np.testing.assert_array_equal(one.predict(clip, verbose=0), one.predict(clip, verbose=0))


def test_bad_experiment_flags_are_one_line_errors(sounds, tmp_path, run_cli, tiny_model,
                                                  folder_flags, assert_one_line_error):
    # (--reinit_from and --runs are refused by the same check, tested in test_model.py
    # and test_training.py.) A value outside a flag's choices is refused by absl itself.
    flags = [*tiny_model, *folder_flags(sounds, data_dir=tmp_path / "d"),
             f"--model_dir={tmp_path / 'm'}"]
    for flag, fragment in [
        ("--augment=paper,pitchy", "flag --augment=paper,pitchy: 'pitchy' is not one of none, "
                                   "paper, specaugment, mixup"),
        ("--trainable=from:conv9", "expanded_conv"),
    ]:
        result = run_cli("train.py", *flags, flag, check=False)
        assert_one_line_error(result, "train.py", fragment)
        assert not os.path.exists(tmp_path / "m") and not os.path.exists(tmp_path / "d")
