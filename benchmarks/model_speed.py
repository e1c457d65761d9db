"""Benchmark 2: a training step and end-to-end inference against plain Keras.

Plain Keras is `keras.applications.<backbone>` with `model.fit` / `predict` and
TensorFlow's and Keras's default settings, in a process that never imports this
package (whose import changes a TensorFlow default, see keras_audio_cnn/__init__).
The project's path is what train.py runs, with its per-device defaults: waveforms
in, log-mel frontend, augmentation flags and coupled weight decay in the step.
Each side runs in its own fresh process on seeded random data, and only
warmed-up calls are timed (the first call traces the graph).

    python -m benchmarks.model_speed ours_train --backbone=DenseNet201
"""

import json
import os
import subprocess
import sys
import time

TRAIN_BATCH = 16
INFERENCE_BATCH = 32
SIDES = ("plain_train", "ours_train", "plain_inference", "ours_inference")


def _timed_fit(model, dataset, steps, batch):
    model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)  # traces, allocates
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch / (time.perf_counter() - start)


def plain_train(backbone, steps):
    import keras
    import numpy as np
    import tensorflow as tf

    from benchmarks import clips

    rng = np.random.default_rng(0)
    images = rng.standard_normal((2 * TRAIN_BATCH, *clips.IMAGE_SHAPE)).astype("float32")
    labels = clips.labels(len(images))
    model = getattr(keras.applications, backbone)(
        weights=None, input_shape=clips.IMAGE_SHAPE, classes=clips.NUM_CLASSES)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(TRAIN_BATCH).repeat()
    return {"rate": _timed_fit(model, ds, steps, TRAIN_BATCH)}


def ours_train(backbone, steps, data_dir=None, manual_dir=None, jit_compile="auto"):
    import numpy as np
    import tensorflow as tf

    from benchmarks import clips
    from keras_audio_cnn import augment, config, datasets, devices, recipe

    defaults = config.TrainConfig()  # the paper's recipe, as train.py runs it
    settings = devices.settings(defaults.precision, jit_compile)
    waveforms = clips.waveforms(2 * TRAIN_BATCH)
    flags = (np.arange(len(waveforms)) % 2).astype("float32")  # half are augmented copies
    _, fitted, _ = recipe.compile_training_model(
        config.ModelConfig(backbone=backbone, weights="none"),
        augment.AugmentPlan(defaults.augment), settings, num_classes=clips.NUM_CLASSES,
        sample_rate=clips.SAMPLE_RATE, num_samples=clips.NUM_SAMPLES,
        learning_rate=defaults.optim.learning_rate, weight_decay=defaults.optim.weight_decay,
        seed=0)
    ds = tf.data.Dataset.from_tensor_slices(((waveforms, flags), clips.labels(len(waveforms))))
    result = {"rate": _timed_fit(fitted, ds.batch(TRAIN_BATCH).repeat(), steps, TRAIN_BATCH),
              "settings": str(settings)}
    if data_dir:
        from benchmarks import data

        source = datasets.open_prepared(data_dir, manual_dir)
        result["input_wait"] = data.input_wait(source, fitted, TRAIN_BATCH)
    return result


def plain_inference(backbone, min_seconds):
    """Three `MelSpectrogram` layers, resized and stacked, the backbone with softmax."""
    import keras

    from benchmarks import clips, common

    waveform = keras.Input((clips.NUM_SAMPLES,))
    channels = []
    for window_ms, hop_ms in zip((25, 50, 100), (10, 25, 50)):
        spectrogram = keras.layers.MelSpectrogram(
            fft_length=4410, sequence_stride=int(round(hop_ms * 44.1)),
            sequence_length=int(round(window_ms * 44.1)), sampling_rate=clips.SAMPLE_RATE,
            num_mel_bins=128, min_freq=0.0, max_freq=clips.SAMPLE_RATE / 2)(waveform)
        spectrogram = keras.layers.Reshape((128, -1, 1))(spectrogram)
        channels.append(keras.layers.Resizing(128, 250)(spectrogram))
    image = keras.layers.Concatenate()(channels)
    probabilities = getattr(keras.applications, backbone)(
        weights=None, input_shape=clips.IMAGE_SHAPE, classes=clips.NUM_CLASSES)(image)
    model = keras.Model(waveform, probabilities)
    waveforms = clips.waveforms(INFERENCE_BATCH)
    return {"rate": common.throughput(lambda: model.predict(waveforms, verbose=0),
                                      INFERENCE_BATCH, min_seconds=min_seconds)}


def ours_inference(backbone, min_seconds):
    import tensorflow as tf

    from benchmarks import clips, common
    from keras_audio_cnn import export, model as model_lib

    model = model_lib.build_model(backbone, clips.NUM_CLASSES, clips.SAMPLE_RATE,
                                  clips.NUM_SAMPLES, weights="none")
    predict = export.inference_function(model)
    batch = tf.constant(clips.waveforms(INFERENCE_BATCH))
    return {"rate": common.throughput(lambda: predict(batch).numpy(), INFERENCE_BATCH,
                                      min_seconds=min_seconds)}


def measure(side, **kwargs):
    """Runs one side in a fresh process; plain sides get TensorFlow's default environment."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if side.startswith("plain"):
        env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    command = [sys.executable, "-m", "benchmarks.model_speed", side,
               *(f"--{k}={v}" for k, v in kwargs.items() if v is not None)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def train_step(backbone, steps=6, data_dir=None, manual_dir=None, jit_compile="auto"):
    from benchmarks import common

    plain = measure("plain_train", backbone=backbone, steps=steps)
    ours = measure("ours_train", backbone=backbone, steps=steps, data_dir=data_dir,
                   manual_dir=manual_dir, jit_compile=jit_compile)
    ratio = ours["rate"] / plain["rate"]
    rows = [common.row(
        "2 train step", f"{backbone}, ESC-50 input, batch {TRAIN_BATCH}", ours["rate"],
        plain["rate"], "samples/s", ratio=ratio, target=">= 1.3x", met=ratio >= 1.3,
        note=f"ours from waveforms (frontend, augmentation, weight decay in the step), "
             f"{ours['settings']}; plain Keras from images, defaults")]
    if "input_wait" in ours:
        rows.append(common.row(
            "3 input pipeline", f"share of {backbone} training-step time spent waiting for input",
            100 * ours["input_wait"], None, "%",
            note=f"batch {TRAIN_BATCH}, prepared ESC-50-sized data, train.py's pipeline"))
    return rows


def inference(backbone, min_seconds=20.0):
    from benchmarks import common

    plain = measure("plain_inference", backbone=backbone, min_seconds=min_seconds)
    ours = measure("ours_inference", backbone=backbone, min_seconds=min_seconds)
    ratio = ours["rate"] / plain["rate"]
    return [common.row(
        "2 inference", f"{backbone}, waveform to probabilities, batch {INFERENCE_BATCH}",
        ours["rate"], plain["rate"], "clips/s", ratio=ratio, target=">= 1.25x",
        met=ratio >= 1.25, note="plain: 3 MelSpectrogram layers + backbone, model.predict")]


def main(argv):
    side = argv[1]
    kwargs = dict(arg[2:].split("=", 1) for arg in argv[2:])
    numbers = {"steps": int, "min_seconds": float}
    kwargs = {k: numbers.get(k, str)(v) for k, v in kwargs.items()}
    if side not in SIDES:
        sys.exit(f"model_speed: error: unknown side {side!r}; choose from {', '.join(SIDES)}")
    print(json.dumps(globals()[side](**kwargs)))


if __name__ == "__main__":
    main(sys.argv)
