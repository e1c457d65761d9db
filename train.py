"""Trains one model per official fold and reports held-out accuracy.

    python train.py --dataset=esc50 --backbone=DenseNet201

Defaults are the recipe of Palanisamy, Singhania and Yao (2020); see README.md.
"""

import dataclasses
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # hide TensorFlow's info lines

from absl import app, flags

flags.DEFINE_string(
    "dataset", "esc50",
    "esc50, urbansound8k, gtzan (gtzan/fault_filtered), audio_folder (with --audio_dir), "
    "or tfds:NAME for a TFDS catalog audio dataset.")
flags.DEFINE_string("backbone", "DenseNet201", "A keras.applications model name.")
flags.DEFINE_string("weights", "imagenet", "imagenet, none, or a Keras weights file for the backbone.")
flags.DEFINE_string(
    "trainable", "all",
    "all: fine-tune everything; head: freeze the backbone; from:<block>: freeze the "
    "backbone's layers before that block (e.g. from:conv4_block1 for DenseNet201).")
flags.DEFINE_string(
    "reinit_from", None,
    "Re-initialise the backbone from this block on, keeping the (pretrained) layers before it.")
flags.DEFINE_list("folds", [], "Folds to hold out, e.g. 1,3 (default: every fold).")
flags.DEFINE_integer("epochs", 70, "Training epochs per fold.")
flags.DEFINE_integer(
    "batch_size", 32,
    "Clips per step on each replica (GPU); the global batch is batch_size x replicas.")
flags.DEFINE_float("learning_rate", 1e-4, "Adam's initial learning rate on one replica (see --lr_scaling).")
flags.DEFINE_enum(
    "lr_scaling", "linear", ["linear", "sqrt", "none"],
    "How the learning rate grows with the replicas (and so the global batch): linear "
    "(x replicas, Goyal et al. 2017), sqrt (x sqrt(replicas), Malladi et al. 2022 for "
    "Adam) or none.")
flags.DEFINE_float("weight_decay", 1e-3, "Coupled L2 weight decay (PyTorch Adam's weight_decay).")
flags.DEFINE_integer("lr_decay_epochs", 30, "Multiply the learning rate by --lr_decay_factor every this many epochs.")
flags.DEFINE_float("lr_decay_factor", 0.1, "Step decay factor of the learning rate.")
flags.DEFINE_float("dropout", 0.0, "Dropout before the output layer.")
flags.DEFINE_boolean("precise_bn", True, "Re-estimate BatchNorm statistics over the training folds before evaluating.")
flags.DEFINE_string(
    "augment", "paper",
    "none, or a comma list of: paper (random pitch shift of -2..2 semitones and time "
    "stretch 0.9..1.2 on a copy of every clip), specaugment (masks), mixup.")
flags.DEFINE_integer("runs", 1, "Models per fold, with different seeds (evaluate.py ensembles them).")
flags.DEFINE_boolean("deterministic", False, "TensorFlow op determinism: bit-identical reruns on one machine.")
flags.DEFINE_string(
    "precision", "float32",
    "float32, or mixed: the backbone computes in float16 on GPUs and in bfloat16 on CPUs "
    "with bfloat16 instructions (AVX512_BF16 or AMX), float32 elsewhere; the frontend, "
    "the logits and the saved models stay float32.")
flags.DEFINE_string(
    "jit_compile", "auto",
    "XLA compilation of the training step: true, false, or auto "
    "(on with one GPU; off on CPUs, with several GPUs and with --deterministic).")
flags.DEFINE_integer("seed", 0, "Random seed (fold k, run r use seed + 1000 (r - 1) + k).")
flags.DEFINE_string("data_dir", None, "TFDS data directory (default: TFDS's, ~/tensorflow_datasets).")
flags.DEFINE_string("manual_dir", None, "Directory holding the dataset's archive for offline preparation.")
flags.DEFINE_string("audio_dir", None, "audio_folder: a folder with one sub-folder of audio files per class.")
flags.DEFINE_integer("sample_rate", None, "audio_folder: sample rate to resample to (default 22050).")
flags.DEFINE_float("clip_seconds", None, "audio_folder: clip length (default: the longest file, at most 10 s).")
flags.DEFINE_integer("num_folds", None, "audio_folder: number of stratified folds (default 5) unless folds.csv says.")
flags.DEFINE_string("model_dir", None, "Output directory (default: runs/<dataset>_<backbone>).")
flags.DEFINE_integer("verbose", 1, "Keras fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch.")
flags.DEFINE_string(
    "ray_address", None,
    "Train every model of the run (folds x runs) as a task of a Ray cluster: local (start "
    "one on this machine), auto (the cluster this machine joined with `ray start`), "
    "HOST:6379, or ray://HOST:10001. --model_dir and --data_dir must be storage every node "
    "sees (shared file system or gs://). Needs pip install -e \".[ray]\".")
flags.DEFINE_integer(
    "ray_gpus_per_task", None,
    "With --ray_address: GPUs per model; a model uses all of them under MirroredStrategy "
    "(default: 1 if the cluster has GPUs, else 0).")
flags.DEFINE_integer(
    "ray_cpus_per_task", 1,
    "With --ray_address: CPUs per model, also its TensorFlow intra-op threads.")
flags.DEFINE_integer(
    "ray_retries", 2,
    "With --ray_address: times a model is retried after an error or a lost worker before "
    "it is reported as failed (a NaN loss is never retried).")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        sys.exit(f"train.py: error: unexpected arguments {argv[1:]}; flags look like --name=value")
    from keras_audio_cnn import training
    from keras_audio_cnn.cli import run_or_exit

    try:
        folds = tuple(int(k) for k in FLAGS.folds)
    except ValueError:
        sys.exit(f"train.py: error: --folds={','.join(FLAGS.folds)} must be fold numbers, e.g. --folds=1,3")
    # Every TrainConfig field is a flag of the same name.
    values = {
        field.name: FLAGS[field.name].value
        for field in dataclasses.fields(training.TrainConfig)
        if field.name != "folds"
    }
    config = training.TrainConfig(folds=folds, **values)
    run_or_exit("train.py", training.run, config)


if __name__ == "__main__":
    app.run(main)
