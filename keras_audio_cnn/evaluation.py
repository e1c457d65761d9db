"""Evaluates a run's fold models on their held-out folds, from the files alone."""

import json
import os

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


def trained_tasks(model_dir):
    """Names of the task directories (`fold3`, `test`) holding a `model.keras`."""
    return sorted(
        name for name in os.listdir(model_dir)
        if os.path.isfile(os.path.join(model_dir, name, "model.keras"))
    )


def evaluate_run(model_dir, data_dir=None, manual_dir=None, batch_size=None):
    """Loads every task model with `tf.keras.models.load_model` and tests it.

    Each model is evaluated only on the part of the data it held out. Returns the
    summary (per-task accuracy, mean and std) and writes `evaluation.json` and
    `evaluation.md` into `model_dir`.
    """
    if not os.path.isdir(model_dir):
        raise EvaluationError(f"--model_dir={model_dir} does not exist; pass a directory train.py wrote")
    run = read_run(model_dir)
    names = trained_tasks(model_dir)
    if not names:
        raise EvaluationError(
            f"{model_dir} has no fold*/model.keras yet; let train.py finish a fold first"
        )
    source = data.open_source(
        run["dataset"],
        data_dir or run.get("data_dir"),
        manual_dir or run.get("manual_dir"),
        audio_dir=run.get("audio_dir"),
        sample_rate=run.get("sample_rate"),
        clip_seconds=run.get("clip_seconds"),
        num_folds=run.get("num_folds"),
    )
    tasks = {task.name: task for task in source.tasks}
    batch_size = batch_size or run.get("batch_size", 32)
    task_metrics = {}
    for name in names:
        if name not in tasks:
            raise EvaluationError(
                f"{model_dir}/{name}: {run['dataset']} has no such part; its protocol is "
                f"{', '.join(tasks)}"
            )
        model = tf.keras.models.load_model(os.path.join(model_dir, name, "model.keras"))
        test_ds = source.load(tasks[name], "test", batch_size)
        task_metrics[name] = training.evaluate(model, test_ds, len(source.class_names))
        print(f"{name}: accuracy {100 * task_metrics[name]['accuracy']:.2f}% "
              f"({task_metrics[name]['num_examples']} clips)")
    summary = training.summarize(task_metrics)
    summary.update(dataset=run["dataset"], backbone=run["backbone"], tasks=task_metrics)
    training.write_json(os.path.join(model_dir, "evaluation.json"), summary)
    table = training.format_accuracy_table(
        summary, f"{run['dataset']}, {run['backbone']}: held-out accuracy"
    )
    with open(os.path.join(model_dir, "evaluation.md"), "w") as f:
        f.write(table)
    print(table)
    return summary
