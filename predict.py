"""Classifies recordings with every finished model of a run (or of several), averaged.

    python predict.py --model_dir=runs/esc50_DenseNet201 recording.wav field/ other.flac
    python predict.py --model_dir=runs/esc50_DenseNet201 --format=csv --output=out.csv field/
    python predict.py --pretrained=panns_cnn14 --top_k=5 recording.wav

Directories are walked recursively. A recording longer than a clip is classified
in clip-length windows (--hop_seconds apart) and its probabilities averaged. With
--pretrained, a network pretrained on AudioSet tags recordings with AudioSet's 527
classes (sigmoid probabilities, 10 s windows) without any training. The Python API is
`keras_audio_cnn.predict.classify`. See README.md.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # hide TensorFlow's info lines

from absl import app, flags  # noqa: E402

from keras_audio_cnn import cli  # noqa: E402  (no TensorFlow: flags parse at once)

PROGRAM = "predict.py"
cli.define_ensemble_flags("Seconds between windows of a recording longer than a clip")
flags.DEFINE_boolean("per_window", False, "Also give each window's classes, with its start "
                     "and end (seconds).")
flags.DEFINE_integer("top_k", 3, "Classes shown per file in the table.", lower_bound=1)
flags.DEFINE_enum("format", "table", ["table", "csv", "json"], "table (for people), csv or json.")
flags.DEFINE_string("output", None, "Write to this file (atomically) instead of stdout.")
flags.DEFINE_integer("batch_size", 32, "Windows per model call.", lower_bound=1)
flags.DEFINE_enum("precision", "float32", ["float32", "mixed"],  # ensemble.PRECISIONS
                  "float32 (as the models were saved), or mixed: the backbones compute in "
                  "bfloat16 on CPUs with bfloat16 instructions (AVX512_BF16 or AMX) and in "
                  "float16 on GPUs, float32 elsewhere; faster there, probabilities slightly "
                  "different.")
FLAGS = flags.FLAGS


def main(argv):
    from keras_audio_cnn import predict_output  # TensorFlow loads here, after the flags

    classified, failed = cli.run_or_exit(
        PROGRAM, predict_output.classify_to_output, argv[1:], FLAGS.model_dir or None,
        output=FLAGS.output, output_format=FLAGS.format, top_k=FLAGS.top_k,
        per_window=FLAGS.per_window, hop_seconds=FLAGS.hop_seconds,
        batch_size=FLAGS.batch_size, precision=FLAGS.precision, progress=sys.stderr.isatty(),
        pretrained=FLAGS.pretrained, weights=FLAGS.weights,
        on_error=lambda line: print(f"{PROGRAM}: error: {line}", file=sys.stderr, flush=True),
        log=lambda line: print(f"{PROGRAM}: {line}", file=sys.stderr, flush=True))
    if failed:
        sys.exit(f"{PROGRAM}: {failed} input(s) failed (listed above), {classified} classified")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.flags_parser(PROGRAM))
