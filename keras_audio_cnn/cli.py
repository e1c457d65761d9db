"""What the command-line entry points share: errors a user can fix are one line."""

import sys

from absl import flags

from keras_audio_cnn.errors import USER_ERRORS, one_line


def flags_parser(program):
    """For `absl.app.run(main, flags_parser=...)`: a bad flag value exits with one line,
    `<program>: error: flag --name=value: why`, instead of absl's two."""

    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as error:
            sys.exit(f"{program}: error: {one_line(error)}")

    return parse


def run_or_exit(program, fn, *args, **kwargs):
    """Calls `fn`; a user-fixable error exits with status 1 and one line."""
    try:
        return fn(*args, **kwargs)
    except USER_ERRORS as error:
        sys.exit(f"{program}: error: {one_line(error)}")


def define_ensemble_flags(hop_help):
    """`--model_dir` (repeatable) and `--hop_seconds`, the flags of the programs that use
    every finished model of runs as one classifier (predict.py, export.py)."""
    flags.DEFINE_multi_string(
        "model_dir", None,
        "A directory written by train.py; repeat to average several runs (e.g. backbones).",
        required=True)
    flags.DEFINE_float("hop_seconds", None, hop_help + " (default: half a clip).")
