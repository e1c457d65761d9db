"""Evaluates a run's fold models on their held-out folds, from the files alone."""

import json
import os

import numpy as np
import tensorflow as tf

from keras_audio_cnn import data, training


class EvaluationError(ValueError):
    """A model directory that cannot be evaluated as asked."""


def read_run(model_dir):
    """The flags a `train.py` run recorded in `model_dir/run.json`."""
    path = os.path.join(model_dir, "run.json")
    if not os.path.isfile(path):
        raise EvaluationError(
            f"{model_dir} holds no train.py run (no run.json); pass the --model_dir "
            "that train.py wrote, or train first: python train.py --model_dir=..."
        )
    with open(path) as f:
        return json.load(f)


def trained_folds(model_dir):
    """Fold numbers whose `fold{k}/model.keras` exists, in order."""
    folds = []
    for name in os.listdir(model_dir):
        if name.startswith("fold") and name[4:].isdigit():
            if os.path.isfile(os.path.join(model_dir, name, "model.keras")):
                folds.append(int(name[4:]))
    return sorted(folds)


def evaluate_run(model_dir, data_dir=None, manual_dir=None, batch_size=None):
    """Loads every fold model with `tf.keras.models.load_model` and tests it.

    Each model is evaluated only on the fold it held out. Returns the summary
    (per-fold accuracy, mean and std) and writes `evaluation.json` and
    `evaluation.md` into `model_dir`.
    """
    if not os.path.isdir(model_dir):
        raise EvaluationError(f"--model_dir={model_dir} does not exist; pass a directory train.py wrote")
    run = read_run(model_dir)
    folds = trained_folds(model_dir)
    if not folds:
        raise EvaluationError(
            f"{model_dir} has no fold*/model.keras yet; let train.py finish a fold first"
        )
    builder = data.prepare(
        run["dataset"],
        data_dir or run.get("data_dir"),
        manual_dir or run.get("manual_dir"),
    )
    available = data.fold_numbers(builder)
    num_classes = len(data.class_names(builder))
    batch_size = batch_size or run.get("batch_size", 32)
    fold_metrics = {}
    for fold in folds:
        if fold not in available:
            raise EvaluationError(f"{model_dir}/fold{fold}: {run['dataset']} has no fold{fold}")
        model = tf.keras.models.load_model(os.path.join(model_dir, f"fold{fold}", "model.keras"))
        test_ds = data.load(builder, f"fold{fold}", batch_size)
        fold_metrics[fold] = training.evaluate(model, test_ds, num_classes)
        print(f"fold {fold}: accuracy {100 * fold_metrics[fold]['accuracy']:.2f}% "
              f"({fold_metrics[fold]['num_examples']} clips)")
    summary = training.summarize(fold_metrics)
    summary.update(dataset=run["dataset"], backbone=run["backbone"],
                   folds={str(k): m for k, m in fold_metrics.items()})
    training.write_json(os.path.join(model_dir, "evaluation.json"), summary)
    table = training.format_accuracy_table(
        summary, f"{run['dataset']}, {run['backbone']}: held-out fold accuracy"
    )
    with open(os.path.join(model_dir, "evaluation.md"), "w") as f:
        f.write(table)
    print(table)
    return summary
