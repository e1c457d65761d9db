"""The TensorFlow sides: the project's paths and plain Keras, each set up in its own process.

`ours_*` sides import keras_audio_cnn before TensorFlow, as train.py does (the
package turns TensorFlow's oneDNN kernels on, see keras_audio_cnn/__init__).
`plain_*` sides never import the package: `keras.applications` with Keras's and
TensorFlow's defaults (the harness drops TF_ENABLE_ONEDNN_OPTS from their
environment, or sets it for the `plain_*_onednn` variants). Inputs are seeded
random data made before timing; every side reports whether oneDNN is on.

    python -m benchmarks.harness benchmarks.sides:ours_train '{"backbone": "DenseNet201"}'
"""

import os

from benchmarks.harness import Side

TRAIN_BATCH = 16
INFERENCE_BATCH = 32
FRONTEND_BATCH = 32
# The 4410-point real FFTs of one 5 s 44.1 kHz clip's three channels: 501 + 201 + 101.
FFTS_PER_CLIP = 803


def _tensorflow_facts():
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    return {"onednn": bool(_pywrap_util_port.IsMklEnabled()),
            "gpus": len(tf.config.list_physical_devices("GPU")),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset")}


def _ours(env=None, per_clip_frontend=True, fused_batch_norm=True):
    """Imports the package before TensorFlow, with `env` set first; turns speed-ups off.

    `per_clip_frontend=False` keeps the frontend's MelSpectrogram layers computing
    whole batches (`frontend.compute_per_clip` off), `fused_batch_norm=False` keeps
    Keras's BatchNormalization kernel: the project as it was before each speed-up,
    for A/B comparisons (`benchmarks.compare`).
    """
    os.environ.update(env or {})
    import keras_audio_cnn  # noqa: F401  (before TensorFlow: its oneDNN default)
    from keras_audio_cnn import frontend, fused_batch_norm as fused

    if not per_clip_frontend:
        frontend.compute_per_clip = lambda layer: False
    if not fused_batch_norm:
        fused.use_fused_kernels = lambda model: 0
    return {"per_clip_frontend": per_clip_frontend, "fused_batch_norm": fused_batch_norm}


def ours_frontend(batch=FRONTEND_BATCH, **speedups):
    """The project's frontend (`frontend.build_frontend`), a batch of ESC-50 clips per call.

    `info` holds its largest and mean |dB| difference from the per-clip librosa +
    PIL reference image (`benchmarks/reference.py`) over 4 clips. `speedups`:
    see `_ours`.
    """
    settings = _ours(**speedups)
    import numpy as np
    import tensorflow as tf

    from benchmarks import clips, reference
    from keras_audio_cnn import frontend

    waveforms = clips.waveforms(batch)
    image_model = frontend.build_frontend(clips.SAMPLE_RATE, clips.NUM_SAMPLES)
    images = tf.function(lambda w: image_model(w, training=False))
    inputs = tf.constant(waveforms)
    expected = np.stack([reference.log_mel_image(c, clips.SAMPLE_RATE) for c in waveforms[:4]])
    difference = np.abs(images(inputs).numpy()[:4] - expected)
    info = dict(_tensorflow_facts(), **settings, max_db_difference=float(difference.max()),
                mean_db_difference=float(difference.mean()))
    return Side(lambda: images(inputs).numpy(), batch, info)


def fft_floor(batch=FRONTEND_BATCH, env=None):
    """The real FFTs of 4410 points a clip's three spectrograms need, alone.

    `tf.signal.rfft` on already-framed random data: a floor under any frontend
    computing these spectrograms with FFTs (nothing else of the frontend runs).
    """
    _ours(env)
    import tensorflow as tf

    frames = tf.random.normal([batch * FFTS_PER_CLIP, 4410], seed=0)
    fft = tf.function(lambda x: tf.signal.rfft(x))
    return Side(lambda: fft(frames).numpy(), batch, _tensorflow_facts())


def ours_train(backbone="DenseNet201", batch=TRAIN_BATCH, jit_compile="auto",
               precision="float32", data_dir=None, manual_dir=None, **speedups):
    """One training step of train.py's model: waveforms in, frontend, the paper's augmentation.

    The model `recipe.compile_training_model` builds with the default recipe
    (Adam, coupled weight decay, the `Augment` layer, accuracy metric), random
    weights; half of each batch is flagged as augmented copies, as the paper's
    doubled epoch delivers on average. With `data_dir`, `finish` measures the
    share of step time spent waiting for train.py's input pipeline. `speedups`:
    see `_ours`.
    """
    speedups_on = _ours(**speedups)
    import numpy as np
    import tensorflow as tf

    from benchmarks import clips
    from keras_audio_cnn import augment, config, devices, recipe

    defaults = config.TrainConfig()
    policy = devices.settings(precision, jit_compile)
    waveforms = tf.constant(clips.waveforms(batch))
    flags = tf.constant((np.arange(batch) % 2).astype("float32"))
    labels = tf.constant(clips.labels(batch))
    _, fitted, _ = recipe.compile_training_model(
        config.ModelConfig(backbone=backbone, weights="none"),
        augment.AugmentPlan(defaults.augment), policy, num_classes=clips.NUM_CLASSES,
        sample_rate=clips.SAMPLE_RATE, num_samples=clips.NUM_SAMPLES,
        learning_rate=defaults.optim.learning_rate, weight_decay=defaults.optim.weight_decay,
        seed=0)

    def finish():
        if not data_dir:
            return {}
        from benchmarks import data

        source = data.open_prepared(data_dir, manual_dir)
        return {"input_wait": data.input_wait(source, fitted, batch)}

    info = dict(_tensorflow_facts(), **speedups_on, dtype_policy=policy.dtype_policy,
                jit_compile=bool(fitted.jit_compile), augment=list(defaults.augment))
    return Side(lambda: fitted.train_on_batch((waveforms, flags), labels), batch, info, finish)


def plain_train(backbone="DenseNet201", batch=TRAIN_BATCH, env=None):
    """`keras.applications.<backbone>` trained with `train_on_batch` on images, defaults.

    `env`: environment variables set before TensorFlow is imported.
    """
    os.environ.update(env or {})
    import keras
    import tensorflow as tf

    from benchmarks import clips

    keras.utils.set_random_seed(0)
    images = tf.random.normal([batch, *clips.IMAGE_SHAPE], seed=0)
    labels = tf.constant(clips.labels(batch))
    model = getattr(keras.applications, backbone)(
        weights=None, input_shape=clips.IMAGE_SHAPE, classes=clips.NUM_CLASSES)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return Side(lambda: model.train_on_batch(images, labels), batch, _tensorflow_facts())


def ours_inference(backbone="DenseNet201", batch=INFERENCE_BATCH, precision="float32",
                   **speedups):
    """Waveforms to probabilities: a fold model's `export.inference_function`, computing
    as `predict.py --precision=<precision>` does.

    `speedups`: see `_ours`.
    """
    settings = _ours(**speedups)
    import tensorflow as tf

    from benchmarks import clips
    from keras_audio_cnn import devices, export, model as model_lib

    model = model_lib.build_model(backbone, clips.NUM_CLASSES, clips.SAMPLE_RATE,
                                  clips.NUM_SAMPLES, weights="none")
    policy = devices.settings(precision, "false").dtype_policy
    model_lib.set_dtype_policy(model, policy)
    predict = export.inference_function(model)
    inputs = tf.constant(clips.waveforms(batch))
    return Side(lambda: predict(inputs).numpy(), batch,
                dict(_tensorflow_facts(), dtype_policy=policy, **settings))


def litert_model(backbone, waveforms, quantize):
    """`export.py --format=tflite --quantize=...`'s one-clip model of a `backbone` with
    random weights at the clips' input (speed does not depend on the weights); int8
    calibrated on the first 8 `waveforms`. Returns (an allocated `ai_edge_litert`
    interpreter on every core, the `.tflite` bytes)."""
    from ai_edge_litert.interpreter import Interpreter

    from benchmarks import clips
    from keras_audio_cnn import device_export, model as model_lib, portable_frontend

    model = model_lib.build_model(backbone, clips.NUM_CLASSES, clips.SAMPLE_RATE,
                                  clips.NUM_SAMPLES, weights="none")

    def representative():
        for clip in waveforms[:8]:
            yield [clip[None]]

    content = portable_frontend.to_tflite(device_export.portable_ensemble([model]),
                                          quantize=quantize, representative=representative)
    runner = Interpreter(model_content=content, num_threads=len(os.sched_getaffinity(0)))
    runner.allocate_tensors()
    return runner, content


def ours_litert_inference(backbone="DenseNet201", batch=INFERENCE_BATCH, quantize="dynamic"):
    """Waveforms to probabilities with `litert_model`, clip by clip. Another model than
    the others' when quantized: its accuracy is not the Keras model's."""
    _ours()
    import numpy as np

    from benchmarks import clips
    from keras_audio_cnn import device_export

    waveforms = clips.waveforms(batch)
    runner, content = litert_model(backbone, waveforms, quantize)
    info = {"quantize": quantize, "tflite_mb": round(len(content) / 2**20, 1),
            "threads": len(os.sched_getaffinity(0))}
    return Side(lambda: np.asarray(device_export.run_tflite(runner, waveforms)), batch, info)


def plain_inference(backbone="DenseNet201", batch=INFERENCE_BATCH):
    """Three `MelSpectrogram` layers, resized and stacked, the backbone, `model.predict`."""
    import keras

    from benchmarks import clips

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
    waveforms = clips.waveforms(batch)
    return Side(lambda: model.predict(waveforms, verbose=0, batch_size=batch), batch,
                _tensorflow_facts())
