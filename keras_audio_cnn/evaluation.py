"""Evaluates trained models on the data they held out, alone and as ensembles.

Every model directory of a task (`fold3/`, or `fold3/run1/`, `fold3/run2/`... with
`--runs`) held that task's test part out; models of several `train.py` runs (e.g.
DenseNet201, ResNet50 and InceptionV3) are averaged per task, and only models that
held the task out ever take part: each model's `metrics.json` records the splits it
was trained and tested on, and a model whose record does not match the task is
refused.

Model directories and outputs may be any `tf.io.gfile` path (local, `gs://`, ...).
"""

import os
import re

import numpy as np
import tensorflow as tf

from keras_audio_cnn import data, fused_batch_norm, training


class EvaluationError(ValueError):
    """Model directories that cannot be evaluated as asked."""


def read_run(model_dir):
    """The flags a `train.py` run recorded in `model_dir/run.json`."""
    if not tf.io.gfile.isdir(model_dir):
        raise EvaluationError(
            f"--model_dir={model_dir} does not exist; pass a directory train.py wrote"
        )
    path = os.path.join(model_dir, "run.json")
    if not tf.io.gfile.exists(path):
        raise EvaluationError(
            f"{model_dir} holds no train.py run (no run.json); pass the --model_dir "
            "that train.py wrote, or train first: python train.py --model_dir=..."
        )
    return training.read_json(path)


def _model_directories(model_dir, task_name):
    """Every directory train.py may have started for one task: `task/` or `task/run*/`."""
    task_dir = os.path.join(model_dir, task_name)
    if not tf.io.gfile.isdir(task_dir):
        return []
    names = [n.rstrip("/") for n in tf.io.gfile.listdir(task_dir)]  # gs:// adds "/"
    runs = [n for n in names if re.fullmatch(r"run\d+", n)]
    if not runs or tf.io.gfile.exists(os.path.join(task_dir, "metrics.json")):
        return [task_dir]
    return [os.path.join(task_dir, n) for n in sorted(runs, key=lambda n: int(n[3:]))]


def run_directories(model_dir, task_name):
    """Directories holding a finished model of one task: `task/` or `task/run*/`.

    A model is finished when its `metrics.json` exists: train.py writes it after
    `model.keras` and `saved_model/` are in place.
    """
    return [d for d in _model_directories(model_dir, task_name)
            if tf.io.gfile.exists(os.path.join(d, "metrics.json"))]


def unfinished_directories(model_dir, task_name):
    """Directories of a task that train.py started but did not finish (no metrics.json).

    Whatever they hold (a backup, a `model.tmp.keras` or `saved_model.tmp` of a
    killed export, even a `model.keras` whose export did not complete) is not a
    finished model and is never loaded.
    """
    return [d for d in _model_directories(model_dir, task_name)
            if not tf.io.gfile.exists(os.path.join(d, "metrics.json"))]


def _check_held_out(run_dir, metrics, task, class_names):
    """Refuses a model that was not trained for exactly this task, or on other classes."""
    trained = (metrics.get("task"), metrics.get("train_split"), metrics.get("test_split"),
               metrics.get("carved_fold"))
    expected = (task.name, task.train, task.test, task.fold)
    if trained != expected:
        raise EvaluationError(
            f"{run_dir} was trained on {trained[1]!r} and held out {trained[2]!r} "
            f"(fold {trained[3]}), not this task's {task.train!r} / {task.test!r}; "
            "it would be tested on clips it trained on"
        )
    if metrics.get("class_names") != class_names:
        raise EvaluationError(
            f"{run_dir} predicts other classes than the dataset has "
            f"({len(metrics.get('class_names') or [])} vs {len(class_names)}); "
            "ensemble only models of one dataset"
        )


def _label(model_dirs, model_dir, run_dir):
    """How a model is named in tables: its run directory, relative to its model_dir."""
    relative = os.path.relpath(run_dir, model_dir)
    return relative if len(model_dirs) == 1 else f"{os.path.basename(os.path.normpath(model_dir))}/{relative}"


def evaluate_runs(model_dirs, data_dir=None, manual_dir=None, batch_size=None,
                  output_dir=None, saliency=0):
    """Evaluates every model of `model_dirs` on its held-out data; ensembles per task.

    Returns the summary and writes `evaluation.json`, `evaluation.md` and
    `report.md` (with figures) into `output_dir` (default: the only model_dir, or
    `runs/ensemble_<dataset>` for several). With `saliency` > 0 also writes that
    many gradient-map figures per class of each task's held-out data.
    """
    if isinstance(model_dirs, str):
        model_dirs = [model_dirs]
    runs = [read_run(d) for d in model_dirs]
    datasets = sorted({r["dataset"] for r in runs})
    if len(datasets) > 1:
        raise EvaluationError(
            f"the model dirs were trained on different datasets ({', '.join(datasets)}); "
            "ensemble only runs of one dataset"
        )
    first = runs[0]
    source = data.open_source(
        first["dataset"],
        data_dir or first.get("data_dir"),
        manual_dir or first.get("manual_dir"),
        audio_dir=first.get("audio_dir"),
        sample_rate=first.get("sample_rate"),
        clip_seconds=first.get("clip_seconds"),
        num_folds=first.get("num_folds"),
    )
    for run in runs[1:]:
        for key in ("audio_dir", "sample_rate", "clip_seconds", "num_folds"):
            if run.get(key) != first.get(key):
                raise EvaluationError(
                    f"{run['model_dir']} used --{key}={run.get(key)}, {first['model_dir']} "
                    f"--{key}={first.get(key)}: not the same data"
                )
    members = {
        task.name: [(d, r) for d in model_dirs for r in run_directories(d, task.name)]
        for task in source.tasks
    }
    unfinished = [u for d in model_dirs for task in source.tasks
                  for u in unfinished_directories(d, task.name)]
    for directory in unfinished:
        print(f"{directory}: no finished model (no metrics.json), left out; rerunning the "
              "train.py command resumes it (summary.md says if it failed)")
    if not any(members.values()):
        raise EvaluationError(
            f"{', '.join(model_dirs)}: no finished model yet (no */metrics.json); let "
            "train.py finish a fold first"
            + (f" ({len(unfinished)} unfinished: rerun the train.py command to resume)"
               if unfinished else "")
        )
    names = source.class_names
    batch_size = batch_size or first.get("batch_size", 32)
    output_dir = output_dir or (
        model_dirs[0] if len(model_dirs) == 1
        else os.path.join("runs", "ensemble_" + first["dataset"].replace("/", "_").replace(":", "_"))
    )

    tasks, rows, histories = {}, [], {}
    confusion_total = np.zeros((len(names), len(names)), dtype=int)
    for task in source.tasks:
        if not members[task.name]:
            continue
        test_ds = source.load(task, "test", batch_size)
        labels = np.concatenate([label.numpy() for _, label in test_ds])
        run_accuracy, probabilities, first_model = {}, [], None
        for model_dir, run_dir in members[task.name]:
            metrics = training.read_json(os.path.join(run_dir, "metrics.json"))
            _check_held_out(run_dir, metrics, task, names)
            model = tf.keras.models.load_model(os.path.join(run_dir, "model.keras"))
            fused_batch_norm.use_fused_kernels(model)  # speed only: same probabilities
            first_model = first_model or model
            p = training.probabilities(model, test_ds)
            label = _label(model_dirs, model_dir, run_dir)
            run_accuracy[label] = float((p.argmax(axis=1) == labels).mean())
            probabilities.append(p)
            if tf.io.gfile.exists(os.path.join(run_dir, "history.csv")):
                histories[label] = os.path.join(run_dir, "history.csv")
        ensemble = training.scores(np.mean(probabilities, axis=0), labels, len(names))
        accuracies = np.array(list(run_accuracy.values()))
        tasks[task.name] = dict(
            ensemble,
            models=list(run_accuracy),
            run_accuracy=run_accuracy,
            run_mean=float(accuracies.mean()),
            run_std=float(accuracies.std()),
        )
        confusion_total += np.array(ensemble["confusion_matrix"])
        rows.append({"task": task.name, "runs": list(accuracies), "mean": float(accuracies.mean()),
                     "std": float(accuracies.std()), "ensemble": ensemble["accuracy"]})
        print(f"{task.name}: " + ", ".join(f"{k} {100 * a:.2f}%" for k, a in run_accuracy.items())
              + (f"; ensemble of {len(run_accuracy)}: {100 * ensemble['accuracy']:.2f}%"
                 if len(run_accuracy) > 1 else ""))
        if saliency:
            _write_saliency(first_model, task, source, labels, saliency, batch_size,
                            os.path.join(output_dir, "saliency", task.name))

    ensemble_accuracy = np.array([t["accuracy"] for t in tasks.values()])
    all_runs = np.concatenate([list(t["run_accuracy"].values()) for t in tasks.values()])
    summary = {
        "dataset": first["dataset"],
        "model_dirs": list(model_dirs),
        "backbones": [r["backbone"] for r in runs],
        "class_names": names,
        "accuracy": {name: t["accuracy"] for name, t in tasks.items()},
        "mean_accuracy": float(ensemble_accuracy.mean()),
        "std_accuracy": float(ensemble_accuracy.std()),
        "mean_run_accuracy": float(all_runs.mean()),
        "tasks": tasks,
        "unfinished": unfinished,
    }
    tf.io.gfile.makedirs(output_dir)
    training.write_json(os.path.join(output_dir, "evaluation.json"), summary)
    title = f"{first['dataset']}, {' + '.join(sorted(set(summary['backbones'])))}"
    table = training.format_accuracy_table(summary, f"{title}: held-out accuracy")
    training.write_text(os.path.join(output_dir, "evaluation.md"), table)
    from keras_audio_cnn import report  # matplotlib only when a report is written

    report.write_report(
        output_dir,
        title=title,
        class_names=names,
        confusion=confusion_total,
        rows=rows,
        histories=histories,
        notes=[
            "Each task's models were all trained without its test data; an ensemble "
            "averages their softmax probabilities.",
            f"Model directories: {', '.join(model_dirs)}.",
        ],
    )
    print(table)
    return summary


def _write_saliency(model, task, source, labels, per_class, batch_size, out_dir):
    from keras_audio_cnn import saliency

    wanted = []
    for label in np.unique(labels):
        wanted += list(np.flatnonzero(labels == label)[:per_class])
    wanted = sorted(wanted)
    waveforms = np.concatenate(
        [w.numpy() for w, _ in source.load(task, "test", batch_size)]
    )[wanted]
    saliency.write_saliency_figures(
        model, waveforms, labels[wanted], source.class_names, out_dir, prefix=f"{task.name}_"
    )
