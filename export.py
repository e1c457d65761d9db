"""Writes one serving model averaging every finished model of a run (or of several).

    python export.py --model_dir=runs/esc50_DenseNet201 --format=saved_model \
        --output=runs/esc50_DenseNet201_ensemble
    python export.py --model_dir=runs/esc50_DenseNet201 --format=tflite --quantize=dynamic \
        --output=esc50.tflite
    python export.py --pretrained=panns_cnn14 --format=saved_model --output=audioset_tagger

The SavedModel's signatures (serve, serve_recording, serve_wav, metadata) are
described in keras_audio_cnn/export.py and docs/using_a_model.md.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # hide TensorFlow's info lines

from absl import app, flags, logging  # noqa: E402

from keras_audio_cnn import cli  # noqa: E402  (no TensorFlow: flags parse at once)

PROGRAM = "export.py"
cli.define_ensemble_flags("Seconds between the windows serve_recording and serve_wav classify, "
                          "as predict.py's --hop_seconds")
flags.DEFINE_enum(
    "format", "saved_model", ["saved_model", "tflite", "onnx"],
    "What to write: saved_model (a folder: serve, serve_recording, serve_wav, metadata), "
    "tflite (LiteRT, one clip in, probabilities out, builtin ops only) or onnx (the same, "
    "needs pip install -e \".[onnx]\"); tflite and onnx also write <output>.json.")
flags.DEFINE_enum(
    "quantize", "none", ["none", "dynamic", "int8"],
    "--format=tflite: none; dynamic (weights stored as int8); int8 (weights and activations "
    "where possible, calibrated on training clips). Prints the size and the held-out accuracy "
    "beside the float model's.")
flags.DEFINE_boolean(
    "evaluate", True,
    "With --quantize: score each model, float and quantized, on its own held-out clips.")
flags.DEFINE_string("output", None, "Where to write the export (a new path, or an earlier "
                    "export, which is replaced).", required=True)
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        sys.exit(f"{PROGRAM}: error: unexpected arguments {argv[1:]}; flags look like "
                 "--name=value")
    from keras_audio_cnn import export  # TensorFlow loads here, after the flags

    logging.set_verbosity(logging.WARNING)  # SavedModel writing logs hundreds of input names
    cli.run_or_exit(PROGRAM, export.export_runs, FLAGS.model_dir, FLAGS.output,
                    output_format=FLAGS.format, hop_seconds=FLAGS.hop_seconds,
                    quantize=FLAGS.quantize, evaluate=FLAGS.evaluate,
                    pretrained=FLAGS.pretrained, weights=FLAGS.weights,
                    log=lambda line: print(f"{PROGRAM}: {line}", file=sys.stderr))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.flags_parser(PROGRAM))
