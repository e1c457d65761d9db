"""Trains one model per official fold and reports held-out accuracy.

    python train.py --dataset=esc50 --backbone=DenseNet201

Every flag is an option of `keras_audio_cnn.config.TrainConfig`, with its default
and help there; defaults are the recipe of Palanisamy, Singhania and Yao (2020).
See README.md.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # hide TensorFlow's info lines

from absl import app, flags  # noqa: E402

from keras_audio_cnn import cli  # noqa: E402  (no TensorFlow: flags parse at once)

cli.define_flags()
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        sys.exit(f"train.py: error: unexpected arguments {argv[1:]}; flags look like --name=value")
    from keras_audio_cnn import grid  # TensorFlow loads here, after the flags

    run_config = cli.run_or_exit("train.py", cli.from_flag_values, FLAGS)
    cli.run_or_exit("train.py", grid.run, run_config)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.flags_parser("train.py"))
