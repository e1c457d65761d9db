"""A PANNs backbone through every command: train.py on ESC-50 (its committed dummy data,
prepared at 32 kHz) from a checkpoint made from the authors' code, evaluate.py,
predict.py, export.py; and predict.py/export.py --pretrained tagging without training,
checked against the authors' own network."""

import csv
import json
import os

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf
import torch

from benchmarks import panns_reference
from keras_audio_cnn import device_export
from keras_audio_cnn.backbones import checkpoints, panns
from tfds_builders.esc50 import esc50_dataset_builder

SPEC = panns.VARIANTS["panns_cnn14"]
ESC50 = os.path.join(os.path.dirname(esc50_dataset_builder.__file__), "dummy_data",
                     "manual_folder")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A work folder whose Keras cache (KERAS_HOME) this module's commands share, with a
    checkpoint of the reference network (random weights) in it."""
    work = tmp_path_factory.mktemp("panns")
    network = panns_reference.reference(SPEC, seed=3)
    panns_reference.save_checkpoint(network, work / "cnn14.pth")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_HOME", str(work / "keras"))
        yield work, network


@pytest.fixture(scope="module")
def trained(work, run_cli):
    folder, _ = work
    model_dir = folder / "run"
    result = run_cli("train.py", "--dataset=esc50", f"--manual_dir={ESC50}",
                     "--backbone=panns_cnn14", f"--weights={folder / 'cnn14.pth'}",
                     "--epochs=1", "--batch_size=4", "--folds=1", "--verbose=2",
                     f"--data_dir={folder / 'tfds'}", f"--model_dir={model_dir}")
    return model_dir, result


def test_train_py_fine_tunes_cnn14_on_esc50_at_32_khz_with_panns_recipe(trained, read_json):
    model_dir, _ = trained
    run = read_json(model_dir, "run.json")
    assert (run["backbone"], run["dropout"], run["weight_decay"], run["amsgrad"],
            run["lr_decay_factor"], run["augment"]) == (
        "panns_cnn14", 0.5, 0.0, True, 1.0, "specaugment")
    metrics = read_json(model_dir, "fold1", "metrics.json")
    assert (metrics["sample_rate"], metrics["num_samples"]) == (32000, 160000)
    assert (metrics["data"]["dataset"], metrics["data"]["config"], metrics["data"]["version"]) \
        == ("esc50", "32000hz", "1.1.0")
    assert metrics["data"]["parts"]["test"]["num_examples"] == 3
    model = tf.keras.models.load_model(os.path.join(model_dir, "fold1", "model.keras"))
    assert model.get_layer("logmel_image").output.shape == (None, 64, 501, 1)
    assert model.output_shape == (None, 50)  # ESC-50's classes
    presets = os.listdir(os.path.join(checkpoints.cache_root(), "presets"))
    assert len(presets) == 1 and presets[0].startswith("panns_cnn14-")


def test_evaluate_py_scores_the_held_out_fold_as_training_did(work, trained, run_cli,
                                                              read_json):
    model_dir, _ = trained
    run_cli("evaluate.py", f"--model_dir={model_dir}", "--saliency=1")
    evaluation = read_json(model_dir, "evaluation.json")
    assert evaluation["accuracy"]["fold1"] == read_json(model_dir, "fold1", "metrics.json")[
        "accuracy"]
    assert len(os.listdir(model_dir / "saliency" / "fold1")) == 3  # one a class
    # evaluate.py opened the config CNN14's rate picked again: nothing else was prepared.
    assert sorted(os.listdir(work[0] / "tfds" / "esc50")) == [".config", "32000hz"]


def _held_out_clips():
    return sorted(os.path.join(ESC50, "ESC-50-master", "audio", name)
                  for name in os.listdir(os.path.join(ESC50, "ESC-50-master", "audio"))
                  if name.startswith("1-"))


def test_predict_and_the_device_exports_of_the_run_give_the_same_probabilities(
        trained, run_cli, tmp_path):
    model_dir, _ = trained
    files = _held_out_clips()
    run_cli("predict.py", f"--model_dir={model_dir}", "--format=csv",
            f"--output={tmp_path / 'p.csv'}", *files)
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    names = list(rows[0])[3:]
    predicted = np.array([[float(row[name]) for name in names] for row in rows])
    np.testing.assert_allclose(predicted.sum(axis=1), 1.0, atol=1e-6)  # a softmax

    clips = np.stack([_resampled(path) for path in files])
    # (the SavedModel of a CNN14: test_the_python_api_and_export_py_pretrained_...)
    for export_format in ("tflite", "onnx"):
        output = tmp_path / f"model.{export_format}"
        run_cli("export.py", f"--model_dir={model_dir}", f"--format={export_format}",
                f"--output={output}")
        probabilities = _run_export(export_format, output, clips)
        np.testing.assert_allclose(probabilities, predicted, rtol=0, atol=1e-4,
                                   err_msg=export_format)


def _resampled(path):
    """A dummy ESC-50 clip as the run's data holds it: at 32 kHz, padded to 5 s, 16-bit."""
    from tfds_builders.audio_io import load_clip

    return load_clip(path, SPEC.sample_rate, 5 * SPEC.sample_rate).astype("float32") / 32768


def _run_export(export_format, output, clips):
    if export_format == "tflite":
        return device_export.run_tflite(device_export.interpreter(output.read_bytes()), clips)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(output))
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: clip[None]})[0] for clip in clips])


@pytest.fixture(scope="module")
def recording(work):
    """12 s at 32 kHz: a tone for 4 s, then noise, over a faint noise floor (16-bit WAV)."""
    folder, _ = work
    rng = np.random.default_rng(5)
    t = np.arange(12 * SPEC.sample_rate) / SPEC.sample_rate
    wave = np.where(t < 4, 0.4 * np.sin(2 * np.pi * 660 * t), 0.1 * rng.standard_normal(len(t)))
    wave = wave + 1e-4 * rng.standard_normal(len(t))
    path = folder / "street.wav"
    sf.write(path, wave, SPEC.sample_rate, subtype="PCM_16")
    return path


def test_predict_py_pretrained_tags_with_audioset_classes_as_the_authors_network(
        work, recording, run_cli, tmp_path):
    folder, network = work
    run_cli("predict.py", "--pretrained=panns_cnn14", f"--weights={folder / 'cnn14.pth'}",
            "--per_window", "--format=json", f"--output={tmp_path / 'tags.json'}",
            str(recording))
    with open(tmp_path / "tags.json") as f:
        (tags,) = json.load(f)
    assert len(tags["probabilities"]) == 527 and "Speech" in tags["probabilities"]
    windows = tags["windows"]
    assert [(w["start"], w["end"]) for w in windows] == [(0.0, 10.0), (5.0, 12.0)]
    samples = sf.read(recording, dtype="float32")[0]
    first, second = samples[:320000], np.pad(samples[160000:], (0, 320000 - 224000))
    with torch.no_grad():
        expected = network(torch.from_numpy(np.stack([first, second])))["clipwise_output"]
    for window, reference in zip(windows, expected.numpy()):
        ours = np.array([window["probabilities"][name] for name in tags["probabilities"]])
        np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-4)  # sigmoid, no softmax
    assert abs(sum(tags["probabilities"].values()) - 1.0) > 0.5


def test_the_python_api_and_export_py_pretrained_give_the_same_tags(
        work, recording, run_cli, tmp_path):
    from keras_audio_cnn import predict

    folder, _ = work
    weights = str(folder / "cnn14.pth")
    (result,) = list(predict.classify(str(recording), pretrained="panns_cnn14", weights=weights))
    assert len(result.class_names) == 527 and len(result.top(5)) == 5
    run_cli("export.py", "--pretrained=panns_cnn14", f"--weights={weights}",
            f"--output={tmp_path / 'tagger'}")
    served = tf.saved_model.load(str(tmp_path / "tagger"))
    assert served.metadata()["activation"].numpy() == b"sigmoid"
    wav = served.serve_wav(tf.constant(recording.read_bytes()))
    np.testing.assert_allclose(wav["probabilities"].numpy(), result.probabilities, rtol=0,
                               atol=1e-5)


def test_offline_the_default_weights_are_one_line_before_any_data_work(
        work, run_cli, assert_one_line_error, tmp_path, monkeypatch):
    folder, _ = work
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for variable in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")  # no network, whatever the machine
    result = run_cli("train.py", "--dataset=esc50", f"--manual_dir={ESC50}",
                     "--backbone=panns_cnn14", f"--data_dir={tmp_path / 'tfds'}",
                     f"--model_dir={tmp_path / 'run'}", check=False)
    target = os.path.join(tmp_path, "keras", "keras_audio_cnn", "downloads",
                          "Cnn14_mAP=0.431.pth")
    assert_one_line_error(result, "train.py", "cannot download the PANNs checkpoint",
                          SPEC.url, f"put it at {target}")
    assert not (tmp_path / "tfds").exists()


def test_a_dataset_named_at_another_rate_is_refused_for_cnn14(
        run_cli, assert_one_line_error, tmp_path):
    result = run_cli("train.py", "--dataset=urbansound8k/44100hz", "--backbone=panns_cnn14",
                     "--weights=none", f"--data_dir={tmp_path / 'tfds'}",
                     f"--model_dir={tmp_path / 'run'}", check=False)
    assert_one_line_error(result, "train.py", "names clips at 44100 Hz but the model needs "
                          "32000 Hz; use urbansound8k/32000hz")
    assert not (tmp_path / "run").exists() and not (tmp_path / "tfds").exists()
