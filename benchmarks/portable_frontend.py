"""The portable (TFLite/ONNX) frontend against the Keras one: accuracy, size, latency.

    python -m benchmarks.portable_frontend [--trials=9] [--dense]

On 5 s 44.1 kHz clips (ESC-50's shape): the largest |dB| difference of the
portable image from the Keras frontend's (in TensorFlow and in LiteRT), the
largest probability difference of a MobileNetV3Small classifier (BatchNorm
statistics calibrated on the clips, so its outputs depend on them) in Keras,
LiteRT/TFLite and, where tf2onnx and onnxruntime import, ONNX Runtime; the
.tflite sizes; and the latency per clip of each frontend alone, as the median
of interleaved single-clip trials with the min and max beside it. --dense
measures the frontend with one dense DFT matrix instead (the classifier keeps
the split DFT).
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_audio_cnn import frontend, model as model_lib  # noqa: E402
from keras_audio_cnn import portable_frontend as portable  # noqa: E402

RATE, SAMPLES = 44100, 220500


def clips(sample_rate=RATE, num_samples=SAMPLES, seed=0):
    """Named test clips: noise, tones, a chirp, silence-padded sounds, silence."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3000 * t)
    chirp = 0.5 * np.sin(2 * np.pi * (50 * t + 0.25 * sample_rate / 2 * t**2 / t[-1]))
    padded_tone = np.where(t < 1.0, tone, 0.0)
    clicks = np.zeros(num_samples)
    clicks[:: sample_rate // 2] = 0.9
    named = {
        "white noise": rng.uniform(-0.5, 0.5, num_samples),
        "quiet noise": 0.01 * rng.standard_normal(num_samples),
        "tones 440+3000 Hz": tone,
        "chirp to Nyquist/2": chirp,
        "tone then 4 s silence": padded_tone,
        "clicks over silence": clicks,
        "silence": np.zeros(num_samples),
    }
    return {name: clip.astype("float32") for name, clip in named.items()}


def calibrated_model(sample_rate, num_samples, waveforms, num_classes=50, seed=0):
    """A MobileNetV3Small classifier (random weights) whose outputs depend on its input.

    With random weights and unit BatchNorm statistics its logits are ~1e-10; each
    BatchNorm's moving mean and variance are set to its input's statistics on
    `waveforms`, and the normalisation to the images' statistics.
    """
    keras.utils.set_random_seed(seed)
    images = keras.ops.convert_to_numpy(frontend.build_frontend(sample_rate, num_samples)(waveforms))
    model = model_lib.build_model(
        "MobileNetV3Small", num_classes, sample_rate, num_samples, weights="none",
        mean=images.mean(axis=(0, 1, 2)), variance=images.var(axis=(0, 1, 2)),
    )
    backbone = model_lib.get_backbone(model)
    inputs = model.get_layer("normalization")(images)
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            x = keras.ops.convert_to_numpy(keras.Model(backbone.input, layer.input)(inputs))
            layer.moving_mean.assign(x.mean(axis=(0, 1, 2)))
            layer.moving_variance.assign(x.var(axis=(0, 1, 2)))
    # Logits of a few units, so probabilities move with the input.
    predictions = model.get_layer("predictions")
    logits = keras.ops.convert_to_numpy(model(waveforms))
    predictions.kernel.assign(predictions.kernel * (3.0 / max(logits.std(), 1e-12)))
    return model


def litert_runner(tflite_bytes):
    """A function running one `[1, num_samples]` waveform through LiteRT (or TFLite)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    interpreter = Interpreter(model_content=tflite_bytes, num_threads=2)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]

    def run(waveform):
        interpreter.set_tensor(source, waveform)
        interpreter.invoke()
        return interpreter.get_tensor(target)

    return run


def softmax(logits):
    return keras.ops.convert_to_numpy(keras.ops.softmax(np.asarray(logits, "float32")))


def interleaved_latency(functions, argument, trials):
    """{name: (median, min, max) seconds} of single calls, the functions taking turns."""
    for fn in functions.values():
        fn(argument)  # trace, allocate
    times = {name: [] for name in functions}
    for _ in range(trials):
        for name, fn in functions.items():
            start = time.perf_counter()
            np.asarray(fn(argument))
            times[name].append(time.perf_counter() - start)
    return {name: (np.median(t), min(t), max(t)) for name, t in times.items()}


def main(argv):
    trials = next((int(a.split("=")[1]) for a in argv if a.startswith("--trials=")), 9)
    dense = "--dense" in argv
    named = clips()
    batch = np.stack(list(named.values()))

    keras_frontend = frontend.build_frontend(RATE, SAMPLES)
    waveform = keras.Input((SAMPLES,), name="waveform")
    layer = portable.PortableLogMelImage(RATE, SAMPLES, dense=dense)
    portable_frontend = keras.Model(waveform, layer(waveform), name="portable_frontend")
    for channel, (name, window, hop) in zip(layer.channels, frontend.channel_settings(RATE)):
        plan = channel["plan"]
        print(f"{name}: window {window}, hop {hop}, FFT {plan.fft_length} = "
              f"{plan.n1} x {plan.n2}, {plan.rows} rows, {channel['time']} frames, "
              f"{plan.multiply_adds() / 1e6:.2f} M multiply-adds per frame")

    reference = keras.ops.convert_to_numpy(keras_frontend(batch))
    ours = keras.ops.convert_to_numpy(portable_frontend(batch))
    frontend_tflite = portable.to_tflite(portable_frontend)
    run_frontend = litert_runner(frontend_tflite)
    in_litert = np.concatenate([run_frontend(clip[None]) for clip in batch])
    print("\nmax |dB| difference from the Keras frontend's image (TF | LiteRT), all values; "
          "values within 50 dB of the clip's peak:")
    for index, name in enumerate(named):
        loud = reference[index] > reference[index].max() - 50
        print(f"  {name:24s} {np.abs(ours[index] - reference[index]).max():.5f} | "
              f"{np.abs(in_litert[index] - reference[index]).max():.5f};  "
              f"{np.abs(ours[index] - reference[index])[loud].max(initial=0):.5f} | "
              f"{np.abs(in_litert[index] - reference[index])[loud].max(initial=0):.5f}")
    print(f"  all clips                {np.abs(ours - reference).max():.5f} | "
          f"{np.abs(in_litert - reference).max():.5f}")

    classifier = calibrated_model(RATE, SAMPLES, batch)
    converted = portable.portable_model(classifier)
    expected = softmax(classifier(batch))
    model_tflite = portable.to_tflite(converted)
    run_model = litert_runner(model_tflite)
    from_litert = softmax(np.concatenate([run_model(clip[None]) for clip in batch]))
    print(f"\nclassifier probabilities: max over clips {expected.max(axis=1).round(3)}")
    print(f"max |probability difference| from Keras: portable in Keras "
          f"{np.abs(softmax(converted(batch)) - expected).max():.2e}, LiteRT "
          f"{np.abs(from_litert - expected).max():.2e}")
    try:
        import onnxruntime
    except ImportError as error:
        print(f"ONNX: not measured ({error})")
    else:
        proto = portable.to_onnx(converted)
        session = onnxruntime.InferenceSession(
            proto.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        from_onnx = softmax(session.run(None, {session.get_inputs()[0].name: batch})[0])
        print(f"  ONNX Runtime {onnxruntime.__version__}: "
              f"{np.abs(from_onnx - expected).max():.2e} ({len(proto.SerializeToString())} bytes)")
    print(f"\n.tflite sizes: frontend {len(frontend_tflite):,} bytes, classifier "
          f"{len(model_tflite):,} bytes")

    compiled_keras = tf.function(lambda x: keras_frontend(x, training=False))
    compiled_portable = tf.function(lambda x: portable_frontend(x, training=False))
    latency = interleaved_latency(
        {
            "Keras frontend (TF graph)": compiled_keras,
            "portable frontend (TF graph)": compiled_portable,
            "portable frontend (LiteRT)": run_frontend,
        },
        batch[:1],
        trials,
    )
    print(f"\nlatency per 5 s 44.1 kHz clip, batch 1, {trials} interleaved trials "
          f"(median [min, max] ms):")
    for name, (median, low, high) in latency.items():
        print(f"  {name:30s} {median * 1e3:8.1f}  [{low * 1e3:.1f}, {high * 1e3:.1f}]")


if __name__ == "__main__":
    main(sys.argv[1:])
