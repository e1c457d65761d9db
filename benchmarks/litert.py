"""The one-clip LiteRT model of a DenseNet201 (ESC-50 input): sizes and latency per clip.

    python -m benchmarks.litert [--backbone=DenseNet201] [--trials=5] [--clips=10]

Builds the model from random weights (the sizes and speeds do not depend on the
weights), converts it as `export.py --format=tflite` does (float, dynamic range and
int8 quantization; int8 calibrated on the benchmark's clips, enough for timing:
`sides.litert_model`), and times `ai_edge_litert`'s interpreter, one clip at a time on 2 threads, in
interleaved trials (float, dynamic, int8, float, ...) of `--clips` clips each;
prints median, min and max per clip, and the load average before and after.
"""

import os
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
    from benchmarks import clips, common, sides
    from keras_audio_cnn import device_export

    waveforms = clips.waveforms(FLAGS.clips)
    variants = {}
    for mode in ("none", "dynamic", "int8"):
        start = time.perf_counter()
        runner, content = sides.litert_model(FLAGS.backbone, waveforms, mode)
        device_export.run_tflite(runner, waveforms[:1])  # warm-up
        variants[mode] = (runner, len(content), time.perf_counter() - start)
    load_before = os.getloadavg()
    times = {mode: [] for mode in variants}
    for _ in range(FLAGS.trials):
        for mode, (runner, _, _) in variants.items():
            start = time.perf_counter()
            device_export.run_tflite(runner, waveforms)
            times[mode].append((time.perf_counter() - start) / len(waveforms))
    load_after = os.getloadavg()
    print(f"{FLAGS.backbone}, {clips.NUM_SAMPLES} samples at {clips.SAMPLE_RATE} Hz, "
          f"{FLAGS.trials} interleaved trials of {FLAGS.clips} clips; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print("| variant | .tflite size | latency per clip: median [min, max] | convert |")
    print("|---|---|---|---|")
    for mode, (_, size, convert) in variants.items():
        stats = common.summarize(times[mode])
        flag = " (spread over 20%)" if stats["unstable"] else ""
        print(f"| {mode} | {size / 2**20:.1f} MB | {1000 * stats['median']:.0f} ms "
              f"[{1000 * stats['min']:.0f}, {1000 * stats['max']:.0f}]{flag} | "
              f"{convert:.0f} s |")
    sys.stdout.flush()


if __name__ == "__main__":
    app.run(main)
