"""The one-clip LiteRT model of a DenseNet201 (ESC-50 input): sizes and latency per clip.

    python -m benchmarks.litert [--backbone=DenseNet201] [--trials=5] [--clips=10]

Builds the model from random weights (the sizes and speeds do not depend on the
weights), converts it as `export.py --format=tflite` does (float, dynamic range and
int8 quantization; int8 calibrated on random clips, which is enough for timing),
and times `ai_edge_litert`'s interpreter, one clip at a time on 2 threads, in
interleaved trials (float, dynamic, int8, float, ...) of `--clips` clips each;
prints median, min and max per clip, and the load average before and after.
"""

import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_string("backbone", "DenseNet201", "A keras.applications model name.")
flags.DEFINE_integer("trials", 5, "Trials per variant, interleaved.")
flags.DEFINE_integer("clips", 10, "Clips per trial.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from keras_audio_cnn import device_export, model as model_lib, portable_frontend

    rate, samples = 44100, 220500
    model = model_lib.build_model(FLAGS.backbone, 50, rate, samples, weights="none")
    ensemble = device_export.portable_ensemble([model])
    rng = np.random.default_rng(0)
    clips = rng.uniform(-0.5, 0.5, (FLAGS.clips, samples)).astype("float32")

    def representative():
        for clip in clips[:8]:
            yield [clip[None]]

    variants = {}
    for mode in ("none", "dynamic", "int8"):
        start = time.perf_counter()
        content = portable_frontend.to_tflite(ensemble, quantize=mode,
                                              representative=representative)
        runner = Interpreter(model_content=content, num_threads=2)
        runner.allocate_tensors()
        device_export.run_tflite(runner, clips[:1])  # warm-up
        variants[mode] = (runner, len(content), time.perf_counter() - start)
    load_before = os.getloadavg()
    times = {mode: [] for mode in variants}
    for _ in range(FLAGS.trials):
        for mode, (runner, _, _) in variants.items():
            start = time.perf_counter()
            device_export.run_tflite(runner, clips)
            times[mode].append((time.perf_counter() - start) / len(clips))
    load_after = os.getloadavg()
    print(f"{FLAGS.backbone}, {samples} samples at {rate} Hz, {FLAGS.trials} interleaved trials "
          f"of {FLAGS.clips} clips; load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after")
    print("| variant | .tflite size | latency per clip: median [min, max] | convert |")
    print("|---|---|---|---|")
    for mode, (_, size, convert) in variants.items():
        per_clip = times[mode]
        spread = (max(per_clip) - min(per_clip)) / statistics.median(per_clip)
        flag = " (spread over 20%)" if spread > 0.2 else ""
        print(f"| {mode} | {size / 2**20:.1f} MB | {1000 * statistics.median(per_clip):.0f} ms "
              f"[{1000 * min(per_clip):.0f}, {1000 * max(per_clip):.0f}]{flag} | "
              f"{convert:.0f} s |")
    sys.stdout.flush()


if __name__ == "__main__":
    app.run(main)
