"""train.py and evaluate.py as a user runs them, on a generated ESC-50 archive."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tfds_builders.esc50 import fake_data

SAMPLES = 220500


@pytest.fixture(scope="module")
def esc50_archive(tmp_path_factory):
    manual = tmp_path_factory.mktemp("manual")
    # 10 of the 50 classes, 2 clips of each per fold: 100 clips.
    fake_data.write_fake_esc50(
        manual, classes=range(0, 50, 5), clips_per_fold_per_class=2, seconds=1.0, as_zip=True
    )
    return manual


@pytest.fixture(scope="module")
def trained(esc50_archive, tmp_path_factory, run_cli, tiny_model):
    work = tmp_path_factory.mktemp("run")
    data_dir, model_dir = str(work / "tfds"), str(work / "model")
    flags = [
        "--dataset=esc50", *tiny_model, "--folds=1", f"--data_dir={data_dir}",
        f"--manual_dir={esc50_archive}", f"--model_dir={model_dir}",
    ]
    result = run_cli("train.py", *flags)
    return dict(flags=flags, data_dir=data_dir, model_dir=model_dir, stdout=result.stdout,
                stderr=result.stderr, manual_dir=str(esc50_archive))


def test_train_writes_every_output_of_a_fold(trained, read_json):
    model_dir = trained["model_dir"]
    fold = os.path.join(model_dir, "fold1")
    for name in ("model.keras", "saved_model/saved_model.pb", "metrics.json", "history.csv"):
        assert os.path.exists(os.path.join(fold, name)), name
    assert os.listdir(os.path.join(fold, "logs"))  # TensorBoard
    assert not os.path.exists(os.path.join(fold, "backup"))  # removed once the fold finished
    metrics = read_json(fold, "metrics.json")
    assert metrics["num_examples"] == 20  # fold 1: 10 classes x 2 clips
    assert metrics["train_split"] == "fold2+fold3+fold4+fold5"
    confusion = np.array(metrics["confusion_matrix"])
    assert confusion.shape == (50, 50) and confusion.sum() == 20
    assert np.trace(confusion) / 20 == pytest.approx(metrics["accuracy"])
    assert metrics["precise_bn_layers"] > 0
    with open(os.path.join(fold, "history.csv")) as f:
        assert f.readline().strip().split(",")[0] == "epoch" and len(f.readlines()) == 1

    summary = read_json(model_dir, "summary.json")
    assert summary["accuracy"] == {"fold1": metrics["accuracy"]}
    assert summary["mean_accuracy"] == metrics["accuracy"] and summary["std_accuracy"] == 0.0
    assert summary["flags"]["backbone"] == "MobileNetV3Small"
    assert summary["versions"]["tensorflow"] and summary["elapsed_seconds"] > 0
    assert len(summary["class_names"]) == 50 and summary["class_names"][0] == "dog"
    with open(os.path.join(model_dir, "summary.md")) as f:
        assert "mean +/- std" in f.read()


def spec_keys(section):
    """The keys (first column, in backticks) of a table of docs/run_directory.md."""
    with open(os.path.join(os.path.dirname(__file__), "..", "docs", "run_directory.md")) as f:
        text = f.read()
    table = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return {line.split("`")[1].rstrip("/") for line in table.splitlines()
            if line.startswith("| `")}


def test_the_run_directory_is_what_its_specification_says(trained, read_json):
    """docs/run_directory.md is what readers of runs (evaluate.py) rely on: a change
    of what train.py writes must change the specification (and its readers) too."""
    from keras_audio_cnn import config

    model_dir = trained["model_dir"]
    fold = os.path.join(model_dir, "fold1")
    assert set(os.listdir(fold)) == spec_keys("A model's directory")
    assert set(read_json(fold, "metrics.json")) == spec_keys("metrics.json")
    assert set(read_json(model_dir, "summary.json")) == spec_keys("summary.json")
    flags = set(config.TrainConfig().to_flags())
    assert set(read_json(model_dir, "run.json")) == flags | spec_keys("run.json")
    assert {"run.json", "summary.json", "summary.md", "fold1"} <= set(os.listdir(model_dir))


def test_the_console_shows_no_warning_of_the_projects_own_making(trained):
    # Keras warns when fit() gets shuffle=True with a tf.data pipeline (which
    # shuffles itself); TFDS warned of FeatureConnector.dtype in the builders.
    assert "shuffle=True" not in trained["stderr"]
    assert "FeatureConnector.dtype" not in trained["stderr"]


def test_evaluate_reproduces_the_accuracy_train_wrote(trained, run_cli, read_json):
    result = run_cli("evaluate.py", f"--model_dir={trained['model_dir']}")
    evaluation = read_json(trained["model_dir"], "evaluation.json")
    metrics = read_json(trained["model_dir"], "fold1", "metrics.json")
    assert evaluation["accuracy"] == {"fold1": metrics["accuracy"]}
    assert evaluation["tasks"]["fold1"]["confusion_matrix"] == metrics["confusion_matrix"]
    assert evaluation["tasks"]["fold1"]["loss"] == pytest.approx(metrics["loss"], rel=1e-5)
    assert "mean +/- std" in result.stdout


def test_a_model_of_official_folds_that_recorded_no_data_still_evaluates(
        trained, tmp_path, run_cli, read_json):
    # Runs trained before models recorded their data: ESC-50's folds are fixed by the
    # builder's version, so such a model is evaluated as before.
    import shutil

    old = tmp_path / "old"
    shutil.copytree(trained["model_dir"], old)
    path = old / "fold1" / "metrics.json"
    metrics = read_json(path)
    del metrics["data"]
    path.write_text(json.dumps(metrics))
    run_cli("evaluate.py", f"--model_dir={old}")
    assert read_json(old, "evaluation.json")["accuracy"] == {"fold1": metrics["accuracy"]}


def test_models_load_in_a_fresh_process_without_this_package(trained, tmp_path):
    fold = os.path.join(trained["model_dir"], "fold1")
    rng = np.random.default_rng(0)
    waveforms = rng.uniform(-0.3, 0.3, (3, SAMPLES)).astype("float32")
    np.save(tmp_path / "x.npy", waveforms)
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import tensorflow as tf
        model = tf.keras.models.load_model({os.path.join(fold, "model.keras")!r})
        logits = model.predict(np.load({str(tmp_path / "x.npy")!r}), verbose=0)
        np.save({str(tmp_path / "keras.npy")!r}, tf.nn.softmax(logits).numpy())
        served = tf.saved_model.load({os.path.join(fold, "saved_model")!r})
        x = tf.constant(np.load({str(tmp_path / "x.npy")!r}))
        np.save({str(tmp_path / "served.npy")!r}, served.serve(x).numpy())
        assert not [m for m in sys.modules if m.startswith(("keras_audio_cnn", "tfds_builders"))]
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, env=env, timeout=300)
    from_keras = np.load(tmp_path / "keras.npy")
    served = np.load(tmp_path / "served.npy")
    assert from_keras.shape == (3, 50)
    np.testing.assert_allclose(from_keras.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(served, from_keras, atol=1e-5)

    import keras  # and the same model in this process gives the same answer

    here = keras.saving.load_model(os.path.join(fold, "model.keras"))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.ops.softmax(here.predict(waveforms, verbose=0))),
        from_keras, atol=1e-5,
    )


def test_rerunning_the_same_command_skips_a_finished_fold(trained, run_cli):
    before = os.path.getmtime(os.path.join(trained["model_dir"], "fold1", "model.keras"))
    result = run_cli("train.py", *trained["flags"])
    assert "fold1: already trained" in result.stdout
    assert os.path.getmtime(os.path.join(trained["model_dir"], "fold1", "model.keras")) == before


def test_unknown_backbone(tmp_path, run_cli, assert_one_line_error):
    result = run_cli("train.py", "--backbone=ResNet5O", f"--model_dir={tmp_path / 'm'}",
                     f"--data_dir={tmp_path / 'd'}", check=False)
    assert_one_line_error(result, "train.py", "ResNet5O", "DenseNet201")
    assert not os.path.exists(tmp_path / "m") and not os.path.exists(tmp_path / "d")


def test_unknown_dataset(tmp_path, run_cli, assert_one_line_error):
    result = run_cli("train.py", "--dataset=esc5O", f"--model_dir={tmp_path / 'm'}",
                     f"--data_dir={tmp_path / 'd'}", check=False)
    assert_one_line_error(result, "train.py", "esc5O", "esc50")
    assert not os.path.exists(tmp_path / "m") and not os.path.exists(tmp_path / "d")


def test_fold_out_of_range(trained, tmp_path, run_cli, assert_one_line_error):
    flags = [f for f in trained["flags"] if not f.startswith(("--folds", "--model_dir"))]
    result = run_cli("train.py", *flags, "--folds=6", f"--model_dir={tmp_path / 'm'}", check=False)
    assert_one_line_error(result, "train.py", "fold 6", "1..5")
    assert not os.path.exists(tmp_path / "m")


def test_missing_manual_archive(tmp_path, run_cli, assert_one_line_error):
    manual = tmp_path / "manual"
    manual.mkdir()
    result = run_cli("train.py", f"--manual_dir={manual}", f"--data_dir={tmp_path / 'd'}",
                     f"--model_dir={tmp_path / 'm'}", "--weights=none", check=False)
    assert_one_line_error(result, "train.py", str(manual), "ESC-50-master.zip")
    assert not os.path.exists(tmp_path / "m")
    assert not os.path.exists(tmp_path / "d") or not os.listdir(tmp_path / "d")


def test_evaluate_empty_model_dir(tmp_path, run_cli, assert_one_line_error):
    (tmp_path / "m").mkdir()
    result = run_cli("evaluate.py", f"--model_dir={tmp_path / 'm'}", check=False)
    assert_one_line_error(result, "evaluate.py", str(tmp_path / "m"))
    assert os.listdir(tmp_path / "m") == []
