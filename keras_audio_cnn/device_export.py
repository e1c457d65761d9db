"""A run's ensemble as one LiteRT (`.tflite`) or ONNX model, for phones and small devices.

The model takes one clip, float32 `[1, num_samples]` in [-1, 1] at the run's sample
rate, and returns the ensemble's probabilities, float32 `[1, classes]`: the mean of
every finished model's softmax, as `predict.py` computes it. Its frontend is
`portable_frontend.PortableLogMelImage` (the same log-mel image from matrix
products: LiteRT's FFT takes only powers of two, and tf2onnx refuses the Keras
frontend's complex FFT), so the `.tflite` has builtin ops only, no Flex op.

Beside the model, `<output>.json` says what it takes and returns (class names in
output order, sample rate, clip length) and, for a quantized `.tflite`, its
held-out accuracy beside the float model's: each member model converted alone
and scored on the test part of its own task (the only clips it never trained on),
with the data its `metrics.json` records (`datasets.open_prepared`, no raw audio).
"""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_audio_cnn import datasets, model as model_lib, portable_frontend, rundir
from keras_audio_cnn import litert_metadata  # what MediaPipe's AudioClassifier reads
from keras_audio_cnn.errors import PredictionError

QUANTIZATIONS = ("none", "dynamic", "int8")
# Clips of the training folds that calibrate int8 activations.
REPRESENTATIVE_CLIPS = 64


def portable_ensemble(models, backbones=None, activation="softmax", dft=False):
    """One Keras model from waveforms to the mean of `models`' probabilities (softmax, or a
    tagger's sigmoid), each with a frontend LiteRT runs (`portable_model` of the backbone's
    family; the same weights, shared), or with `dft` one ONNX runs (no FFT op)."""
    backbones = backbones or ["DenseNet201"] * len(models)  # the paper's family
    portable = [model_lib.family(backbone).portable_model(m, backbone, name=f"member{i}",
                                                          dft=dft)
                for i, (m, backbone) in enumerate(zip(models, backbones), 1)]
    waveform = keras.Input(shape=portable[0].input_shape[1:], name="waveform")
    logits = [m(waveform) for m in portable]
    logits = [x[0] if isinstance(x, (list, tuple)) else x for x in logits]  # one output each
    if activation == "sigmoid":
        outputs = [keras.layers.Activation("sigmoid", dtype="float32")(x) for x in logits]
    else:
        outputs = [keras.layers.Softmax(dtype="float32")(x) for x in logits]
    mean = outputs[0] if len(outputs) == 1 else keras.layers.Average()(outputs)
    return keras.Model(waveform, mean, name="ensemble")


def interpreter(content):
    """A LiteRT interpreter of a `.tflite` flatbuffer (`ai_edge_litert`, else TF's)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    runner = Interpreter(model_content=content)
    runner.allocate_tensors()
    return runner


def run_tflite(runner, waveforms):
    """Outputs of a one-clip `.tflite` model for each waveform, stacked."""
    source = runner.get_input_details()[0]["index"]
    target = runner.get_output_details()[0]["index"]
    outputs = []
    for waveform in waveforms:
        runner.set_tensor(source, np.asarray(waveform, np.float32)[None])
        runner.invoke()
        outputs.append(runner.get_tensor(target)[0])
    return np.stack(outputs)


def _held_out(ensemble, quantize, representative):
    """Each member's held-out accuracy as a float and as a quantized `.tflite`."""
    rows = []
    for model_dir, run_dir, model, backbone in zip(ensemble.member_runs, ensemble.members,
                                                   ensemble.models, ensemble.backbones):
        source, task = _task_data(model_dir, run_dir)
        waveforms, labels = zip(*[(w, y) for ws, ys in source.load(task, "test", 32)
                                  for w, y in zip(ws.numpy(), ys.numpy())])
        single = portable_ensemble([model], [backbone])
        accuracy = {}
        for kind, mode in (("float", "none"), ("quantized", quantize)):
            content = portable_frontend.to_tflite(single, quantize=mode,
                                                  representative=representative)
            predicted = run_tflite(interpreter(content), waveforms).argmax(axis=1)
            accuracy[kind] = float(np.mean(predicted == np.array(labels)))
        rows.append({"model": run_dir, "task": task.name, "clips": len(labels),
                     "keras": rundir.read_metrics(run_dir)["accuracy"], **accuracy})
    return rows


def _task_data(model_dir, run_dir):
    """The prepared data a model (`run_dir`, of the run `model_dir`) recorded, and its task."""
    record = rundir.read_metrics(run_dir).get("data")
    run = rundir.read_run(model_dir)
    if record is None:
        raise PredictionError(f"{run_dir} recorded no data (trained by an earlier version): "
                              "quantize with --noevaluate, or train it again")
    source = datasets.open_prepared(run["data_dir"], record["dataset"], record["config"],
                                    record["version"])
    return source, next(t for t in source.tasks if t.name == record["task"])


def _representative(ensemble):
    """Training clips of the first member's task, to calibrate int8 activations."""
    source, task = _task_data(ensemble.member_runs[0], ensemble.members[0])

    def clips():
        for waveforms, _ in source.load(task, "train", 1, shuffle=True, seed=0).take(
                REPRESENTATIVE_CLIPS):
            yield [waveforms]

    return clips


def write(ensemble, path, output_format, quantize="none", evaluate=True, log=print):
    """Writes the ensemble as `.tflite` or ONNX at `path`, and `<path>.json` beside it.

    Returns the description written to the JSON file.
    """
    if output_format == "onnx" and quantize != "none":
        raise PredictionError("--quantize applies to --format=tflite only")
    model = portable_ensemble(ensemble.models, ensemble.backbones, ensemble.activation,
                              dft=output_format == "onnx")
    representative = _representative(ensemble) if quantize == "int8" else None
    if output_format == "tflite":
        content = portable_frontend.to_tflite(model, quantize=quantize,
                                              representative=representative)
        content = litert_metadata.with_metadata(content, ensemble.class_names,
                                                ensemble.sample_rate,
                                                activation=ensemble.activation)
    else:
        content = portable_frontend.to_onnx(model).SerializeToString()
    description = {
        "format": output_format, "quantize": quantize, "bytes": len(content),
        "input": {"name": "waveform", "dtype": "float32",
                  "shape": [1, ensemble.num_samples], "range": [-1.0, 1.0]},
        "output": {"dtype": "float32", "shape": [1, len(ensemble.class_names)],
                   "meaning": ("each class's sigmoid probability (AudioSet tags)"
                               if ensemble.activation == "sigmoid"
                               else "probabilities, the mean of every member's softmax")},
        "class_names": ensemble.class_names, "sample_rate": ensemble.sample_rate,
        "num_samples": ensemble.num_samples, "members": ensemble.members,
    }
    if output_format == "tflite" and quantize != "none":
        float_bytes = len(portable_frontend.to_tflite(model))
        description["float_bytes"] = float_bytes
        log(f"{quantize} quantization: {len(content) / 2**20:.2f} MB, float "
            f"{float_bytes / 2**20:.2f} MB")
        if evaluate and not ensemble.model_dirs:
            log(f"{ensemble.members[0]}: no held-out clips to score the {quantize} model on "
                "(it was not trained here); its size only")
        elif evaluate:
            description["held_out"] = _held_out(ensemble, quantize, representative)
            for row in description["held_out"]:
                log(f"{row['model']}: held-out accuracy on {row['task']} ({row['clips']} clips): "
                    f"Keras {100 * row['keras']:.2f}%, float .tflite "
                    f"{100 * row['float']:.2f}%, {quantize} {100 * row['quantized']:.2f}%")
    directory, name = os.path.split(os.path.abspath(path))
    # An earlier export's description goes first: stopped between the two, the new model
    # must not stand beside a description of another one.
    rundir.remove(f"{path}.json")
    rundir.publish(directory, name, lambda temporary: _write_bytes(temporary, content))
    rundir.write_json(f"{path}.json", description)
    return description


def _write_bytes(path, content):
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(content)


def check_output(output):
    """A `.tflite`/ONNX export is one file: refuse a directory."""
    if tf.io.gfile.isdir(output):
        raise PredictionError(f"--output={output} is a directory; give the path of the "
                              "model file to write, e.g. model.tflite")

