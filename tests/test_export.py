"""export.py: one SavedModel for a run's ensemble, its signatures against predict.py."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf

from tfds_builders.audio_folder import fake_data as folder_fake

CLASSES = ("a_low", "b_high")
RATE, CLIP = 8000, 4000  # the tiny folder's clips: 0.5 s at 8 kHz


@pytest.fixture(scope="module")
def exported(make_sounds, folder_flags, tiny_model, run_cli, tmp_path_factory):
    """A run of two models (fold 1, --runs=2) and its ensemble exported as a SavedModel."""
    work = make_sounds(classes=CLASSES, files_per_class=6)
    model_dir = work / "model"
    run_cli("train.py", *folder_flags(work), *tiny_model, "--folds=1", "--runs=2",
            f"--model_dir={model_dir}")
    export_dir = work / "ensemble"
    result = run_cli("export.py", f"--model_dir={model_dir}", f"--output={export_dir}")
    assert result.stderr.strip().splitlines()[-1] == (
        f"export.py: {export_dir}: saved_model averaging 2 model(s): 2 classes, 8000 Hz, clips "
        "of 4000 samples, windows every 2000 samples")
    return dict(work=work, model_dir=str(model_dir), export_dir=str(export_dir))


def test_saved_model_cli_shows_the_signatures(exported):
    shown = subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--dir",
         exported["export_dir"], "--all"], capture_output=True, text=True, check=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")).stdout
    signatures = {}
    for block in shown.split("signature_def['")[1:]:
        name, body = block.split("']", 1)
        tensors = {}
        for part in body.split("puts['")[1:]:
            key, info = part.split("']", 1)
            dtype = info.split("dtype: ")[1].split()[0]
            shape = info.split("shape: ")[1].split("\n")[0]
            tensors[key] = (dtype, shape)
        signatures[name] = tensors
    probabilities = {"class_names": ("DT_STRING", "(2)"), "probabilities": ("DT_FLOAT", "(2)"),
                     "window_probabilities": ("DT_FLOAT", "(-1, 2)"),
                     "window_start_seconds": ("DT_FLOAT", "(-1)")}
    assert signatures["serve"] == {"waveform": ("DT_FLOAT", "(-1, 4000)"),
                                   "class_names": ("DT_STRING", "(2)"),
                                   "probabilities": ("DT_FLOAT", "(-1, 2)")}
    assert signatures["serve_recording"] == {"waveform": ("DT_FLOAT", "(-1)"), **probabilities}
    assert signatures["serve_wav"] == {"wav": ("DT_STRING", "()"), **probabilities}
    assert signatures["metadata"] == {
        "class_names": ("DT_STRING", "(2)"), "sample_rate": ("DT_INT32", "()"),
        "num_samples": ("DT_INT32", "()"), "hop_samples": ("DT_INT32", "()"),
        "activation": ("DT_STRING", "()")}


_CALL_EVERY_SIGNATURE = """
import json, sys
import numpy as np, soundfile as sf, tensorflow as tf

export_dir, clip, recording, stereo, bad_wavs, out = sys.argv[1:7]
model = tf.saved_model.load(export_dir)
s = model.signatures
result = {k: v.numpy().tolist() for k, v in s["metadata"]().items()
          if k not in ("class_names", "activation")}
result["class_names"] = [n.decode() for n in s["metadata"]()["class_names"].numpy()]
result["activation"] = s["metadata"]()["activation"].numpy().decode()
clip_wave = sf.read(clip, dtype="float32")[0]
result["serve"] = s["serve"](waveform=tf.constant(clip_wave[None]))["probabilities"].numpy().tolist()
for name, output in [
        ("serve_recording", s["serve_recording"](waveform=tf.constant(sf.read(recording, dtype="float32")[0]))),
        ("serve_wav", s["serve_wav"](wav=tf.constant(open(stereo, "rb").read())))]:
    result[name] = {k: v.numpy().tolist() for k, v in output.items() if k != "class_names"}
    result[name]["class_names"] = [n.decode() for n in output["class_names"].numpy()]
refused = {}
for path in bad_wavs.split(","):
    try:
        s["serve_wav"](wav=tf.constant(open(path, "rb").read()))
    except tf.errors.InvalidArgumentError as error:
        refused[path] = error.message
for name, waveform in [("nan", [0.1, float("nan")] * 3000), ("empty", [])]:
    try:
        s["serve_recording"](waveform=tf.constant(waveform, tf.float32))
    except tf.errors.InvalidArgumentError as error:
        refused[name] = error.message
result["refused"] = refused
assert not [m for m in sys.modules if m.startswith(("keras_audio_cnn", "tfds_builders"))]
json.dump(result, open(out, "w"))
"""


def test_every_signature_matches_predict_in_a_fresh_process(exported, run_cli, tmp_path):
    rng = np.random.default_rng(4)
    low, high = (folder_fake.class_frequency(k, 2) for k in range(2))
    clip, recording, stereo = (str(tmp_path / n) for n in ("clip.wav", "rec.wav", "stereo.wav"))
    sf.write(clip, folder_fake.tone(rng, low, 0.5, RATE, 1), RATE, subtype="PCM_16")
    long = np.concatenate([folder_fake.tone(rng, f, 1.6, RATE, 1) for f in (low, high)])
    sf.write(recording, long, RATE, subtype="PCM_16")  # 3.2 s: 12 windows, the last padded
    sf.write(stereo, np.concatenate([long, long[::-1]], axis=1), RATE, subtype="PCM_16")
    bad = {"24bit.wav": dict(subtype="PCM_24"), "float.wav": dict(subtype="FLOAT"),
           "extensible.wav": dict(subtype="PCM_16", format="WAVEX"),
           "16khz.wav": dict(subtype="PCM_16", samplerate=16000)}
    for name, options in bad.items():
        sf.write(str(tmp_path / name), long, **{"samplerate": RATE, **options})
    out = tmp_path / "predict.json"
    run_cli("predict.py", f"--model_dir={exported['model_dir']}", "--format=json",
            "--per_window", f"--output={out}", clip, recording, stereo)
    predicted = {r["path"]: r for r in json.loads(out.read_text())}

    served_json = tmp_path / "served.json"
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CALL_EVERY_SIGNATURE), exported["export_dir"],
         clip, recording, stereo, ",".join(str(tmp_path / n) for n in bad), str(served_json)],
        check=True, cwd=tmp_path, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), timeout=600)
    served = json.loads(served_json.read_text())

    assert served["class_names"] == list(CLASSES) and served["activation"] == "softmax"
    assert (served["sample_rate"], served["num_samples"], served["hop_samples"]) == (8000, 4000,
                                                                                     2000)
    np.testing.assert_allclose(served["serve"][0], list(predicted[clip]["probabilities"].values()),
                               atol=1e-5)
    for name, path in (("serve_recording", recording), ("serve_wav", stereo)):
        expected = predicted[path]
        assert served[name]["class_names"] == list(CLASSES)
        np.testing.assert_allclose(served[name]["probabilities"],
                                   list(expected["probabilities"].values()), atol=1e-5)
        windows = expected["windows"]
        assert len(windows) == 12
        np.testing.assert_allclose(served[name]["window_start_seconds"],
                                   [w["start"] for w in windows], atol=1e-5)
        np.testing.assert_allclose(served[name]["window_probabilities"],
                                   [list(w["probabilities"].values()) for w in windows], atol=1e-5)
    refused = served["refused"]
    assert "16-bit" in refused[str(tmp_path / "24bit.wav")]
    assert "Expected 1 (PCM)" in refused[str(tmp_path / "float.wav")]
    assert "format chunk size" in refused[str(tmp_path / "extensible.wav")]
    assert "must be at 8000 Hz" in refused[str(tmp_path / "16khz.wav")]
    assert "NaN or infinite" in refused["nan"] and "holds no samples" in refused["empty"]


def test_export_refuses_a_file_or_a_foreign_folder_and_replaces_an_earlier_export(
        exported, run_cli, assert_one_line_error, tmp_path):
    model_flag = f"--model_dir={exported['model_dir']}"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    result = run_cli("export.py", model_flag, f"--output={a_file}", check=False)
    assert_one_line_error(result, "export.py", str(a_file), "is a file")
    assert a_file.read_text() == "keep me"
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"jpeg")
    result = run_cli("export.py", model_flag, f"--output={folder}", check=False)
    assert_one_line_error(result, "export.py", str(folder), "holds no SavedModel")
    assert os.listdir(folder) == ["cat.jpg"]
    result = run_cli("export.py", f"--model_dir={tmp_path / 'nothing'}",
                     f"--output={tmp_path / 'out'}", check=False)
    assert_one_line_error(result, "export.py", str(tmp_path / "nothing"), "does not exist")
    assert not (tmp_path / "out").exists()

    earlier = str(tmp_path / "earlier")
    shutil.copytree(exported["export_dir"], earlier)
    (open(os.path.join(earlier, "stale.txt"), "w")).close()
    run_cli("export.py", model_flag, f"--output={earlier}", "--hop_seconds=0.125")
    assert "stale.txt" not in os.listdir(earlier) and "saved_model.pb" in os.listdir(earlier)
    assert not os.path.exists(earlier + ".tmp")
    import tensorflow as tf

    assert int(tf.saved_model.load(earlier).signatures["metadata"]()["hop_samples"]) == 1000


def test_tflite_and_onnx_exports_run_and_equal_predict(exported, run_cli, tmp_path, read_json):
    """One-clip .tflite (LiteRT, builtin ops only) and ONNX models of the ensemble give
    predict.py's probabilities within 1e-3; quantized, a smaller file and each model's
    held-out accuracy beside the float model's."""
    from ai_edge_litert.interpreter import Interpreter
    import onnxruntime

    from keras_audio_cnn import device_export
    from tfds_builders import audio_io

    clips = [p for p in sorted((exported["work"] / "audio").rglob("*.wav"))][:6]
    result = run_cli("predict.py", f"--model_dir={exported['model_dir']}", "--format=json",
                     *map(str, clips))
    expected = np.array([[row["probabilities"][name] for name in CLASSES]
                         for row in json.loads(result.stdout)])
    waveforms = np.stack([audio_io.load_clip(c, RATE, CLIP) / np.float32(32768) for c in clips])

    path = tmp_path / "ensemble.tflite"
    run_cli("export.py", f"--model_dir={exported['model_dir']}", "--format=tflite",
            f"--output={path}")
    described = read_json(f"{path}.json")
    assert described["class_names"] == list(CLASSES) and described["sample_rate"] == RATE
    assert described["input"]["shape"] == [1, CLIP] and len(described["members"]) == 2
    litert = Interpreter(model_path=str(path))
    litert.allocate_tensors()
    ops = {op["op_name"] for op in litert._get_ops_details()}
    assert not any(op in ("RFFT2D", "FLEX_DELEGATE", "CUSTOM") or "FLEX" in op for op in ops)
    np.testing.assert_allclose(device_export.run_tflite(litert, waveforms), expected, atol=1e-3)

    onnx_path = tmp_path / "ensemble.onnx"
    run_cli("export.py", f"--model_dir={exported['model_dir']}", "--format=onnx",
            f"--output={onnx_path}")
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outputs = np.concatenate([session.run(None, {session.get_inputs()[0].name: w[None]})[0]
                              for w in waveforms])
    np.testing.assert_allclose(outputs, expected, atol=1e-3)

    quantized = tmp_path / "ensemble_dynamic.tflite"
    result = run_cli("export.py", f"--model_dir={exported['model_dir']}", "--format=tflite",
                     "--quantize=dynamic", f"--output={quantized}")
    described = read_json(f"{quantized}.json")
    assert quantized.stat().st_size == described["bytes"] < described["float_bytes"] / 2
    held_out = described["held_out"]
    assert [row["task"] for row in held_out] == ["fold1", "fold1"]
    for row in held_out:
        assert 0.0 <= row["quantized"] <= 1.0 and row["float"] == pytest.approx(row["keras"])
        assert f"held-out accuracy on fold1 ({row['clips']} clips)" in result.stderr


def test_device_exports_refuse_a_directory_and_quantized_onnx(exported, run_cli, tmp_path,
                                                             assert_one_line_error):
    result = run_cli("export.py", f"--model_dir={exported['model_dir']}", "--format=tflite",
                     f"--output={tmp_path}", check=False)
    assert_one_line_error(result, "export.py", f"--output={tmp_path} is a directory")
    result = run_cli("export.py", f"--model_dir={exported['model_dir']}", "--format=onnx",
                     "--quantize=dynamic", f"--output={tmp_path / 'm.onnx'}", check=False)
    assert_one_line_error(result, "export.py", "--quantize applies to --format=tflite only")
    assert os.listdir(tmp_path) == []
