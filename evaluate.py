"""Evaluates every model of a run on the data it held out; ensembles runs.

    python evaluate.py --model_dir=runs/esc50_DenseNet201
    python evaluate.py --model_dir=runs/esc50_DenseNet201 --model_dir=runs/esc50_ResNet50

Data flags default to what train.py recorded in the first run's run.json.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # hide TensorFlow's info lines

from absl import app, flags  # noqa: E402

from keras_audio_cnn import cli  # noqa: E402  (no TensorFlow: flags parse at once)

flags.DEFINE_multi_string(
    "model_dir", None,
    "A directory written by train.py; repeat to ensemble several runs (e.g. backbones).",
    required=True)
flags.DEFINE_string("data_dir", None, "TFDS data directory (default: the run's).")
flags.DEFINE_string("manual_dir", None, "Directory holding the dataset's archive (default: the run's).")
flags.DEFINE_integer("batch_size", None, "Evaluation batch size (default: the run's).")
flags.DEFINE_string(
    "output_dir", None,
    "Where evaluation.json, evaluation.md and report.md go (default: the only --model_dir, "
    "or runs/ensemble_<dataset> for several).")
flags.DEFINE_integer("saliency", 0, "Write gradient-map figures for this many clips per class.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        sys.exit(f"evaluate.py: error: unexpected arguments {argv[1:]}; flags look like --name=value")
    from keras_audio_cnn import evaluation  # TensorFlow loads here, after the flags

    cli.run_or_exit(
        "evaluate.py",
        evaluation.evaluate_runs,
        FLAGS.model_dir,
        data_dir=FLAGS.data_dir,
        manual_dir=FLAGS.manual_dir,
        batch_size=FLAGS.batch_size,
        output_dir=FLAGS.output_dir,
        saliency=FLAGS.saliency,
    )


if __name__ == "__main__":
    app.run(main, flags_parser=cli.flags_parser("evaluate.py"))
