"""Writes one serving model averaging every finished model of a run (or of several).

    python export.py --model_dir=runs/esc50_DenseNet201 --format=saved_model \
        --output=runs/esc50_DenseNet201_ensemble

The SavedModel's signatures (serve, serve_recording, serve_wav, metadata) are
described in keras_audio_cnn/export.py and README.md.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # hide TensorFlow's info lines

from absl import app, flags, logging  # noqa: E402

from keras_audio_cnn import cli  # noqa: E402  (no TensorFlow: flags parse at once)

PROGRAM = "export.py"
cli.define_ensemble_flags("Seconds between the windows serve_recording and serve_wav classify, "
                          "as predict.py's --hop_seconds")
flags.DEFINE_enum("format", "saved_model", ["saved_model"], "What to write: saved_model.")
flags.DEFINE_string("output", None, "Where to write the export (a new path, or an earlier "
                    "export's folder, which is replaced).", required=True)
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        sys.exit(f"{PROGRAM}: error: unexpected arguments {argv[1:]}; flags look like "
                 "--name=value")
    from keras_audio_cnn import export  # TensorFlow loads here, after the flags

    logging.set_verbosity(logging.WARNING)  # SavedModel writing logs hundreds of input names
    cli.run_or_exit(PROGRAM, export.export_runs, FLAGS.model_dir, FLAGS.output,
                    output_format=FLAGS.format, hop_seconds=FLAGS.hop_seconds,
                    log=lambda line: print(f"{PROGRAM}: {line}", file=sys.stderr))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.flags_parser(PROGRAM))
