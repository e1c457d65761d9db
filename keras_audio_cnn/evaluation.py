"""Evaluates trained models on the data they held out, alone and as ensembles.

Every model directory of a task (`fold3/`, or `fold3/run1/`, `fold3/run2/`... with
`--runs`) held that task's test part out; models of several `train.py` runs (e.g.
DenseNet201, ResNet50 and InceptionV3) are averaged per task, and only models that
held the task out ever take part: each model's `metrics.json` records the splits it
was trained and tested on, and a model whose record does not match the task is
refused.

Model directories and outputs may be any `tf.io.gfile` path (local, `gs://`, ...).
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from keras_audio_cnn import config as config_lib
from keras_audio_cnn import datasets, metrics, model as model_lib, provenance, rundir
from keras_audio_cnn.errors import EvaluationError


def _check_held_out(run_dir, model_metrics, task, source):
    """Refuses a model that was not trained for exactly this task, or on other classes."""
    class_names = source.class_names
    trained = (model_metrics.get("task"), model_metrics.get("train_split"),
               model_metrics.get("test_split"), model_metrics.get("carved_fold"))
    expected = (task.name, task.train, task.test, task.fold)
    if trained != expected:
        raise EvaluationError(
            f"{run_dir} was trained on {trained[1]!r} and held out {trained[2]!r} "
            f"(fold {trained[3]}), not this task's {task.train!r} / {task.test!r}; "
            "it would be tested on clips it trained on"
        )
    if task.fold is not None and model_metrics.get("fold_assignment") != source.fold_assignment:
        # Folds carved out of a `train` split are dealt by tfds_builders.folds; a model
        # whose folds were dealt another way held out other clips than this fold's.
        raise EvaluationError(
            f"{run_dir} was trained on folds of {task.train!r} dealt by "
            f"{model_metrics.get('fold_assignment') or 'an earlier version'}, not by "
            f"{source.fold_assignment} as this version deals them; its fold {task.fold} "
            "would hold clips it trained on: retrain it (rerun train.py in a new --model_dir)"
        )
    changed = provenance.problem(run_dir, model_metrics, source, task)
    if changed:
        raise EvaluationError(f"{changed}; evaluate it on the data it was trained on (restore "
                              "it), or train it again (train.py --overwrite)")
    if model_metrics.get("class_names") != class_names:
        raise EvaluationError(
            f"{run_dir} predicts other classes than the dataset has "
            f"({len(model_metrics.get('class_names') or [])} vs {len(class_names)}); "
            "ensemble only models of one dataset"
        )


def _label(model_dirs, model_dir, run_dir):
    """How a model is named in tables: its run directory, relative to its model_dir."""
    relative = os.path.relpath(run_dir, model_dir)
    if len(model_dirs) == 1:
        return relative
    return f"{os.path.basename(os.path.normpath(model_dir))}/{relative}"


def load_model(run_dir, model_dir=None):
    """The finished model of `run_dir`, or a one-line `EvaluationError` saying why it cannot
    be loaded (`rundir.load_model`)."""
    return rundir.load_model(run_dir, model_dir, EvaluationError)


def _read_runs(model_dirs):
    """The runs' configs, after checking that they trained on the same data."""
    configs = [config_lib.TrainConfig.from_flags(rundir.read_run(d)) for d in model_dirs]
    datasets = sorted({c.data.dataset for c in configs})
    if len(datasets) > 1:
        raise EvaluationError(
            f"the model dirs were trained on different datasets ({', '.join(datasets)}); "
            "ensemble only runs of one dataset"
        )
    first = configs[0]
    for directory, run in zip(model_dirs[1:], configs[1:]):
        if model_lib.data_sample_rate(run) != model_lib.data_sample_rate(first):
            raise EvaluationError(
                f"{directory} ({run.model.backbone}) trained on audio at "
                f"{model_lib.data_sample_rate(run) or 'the dataset rate'} Hz, {model_dirs[0]} "
                f"({first.model.backbone}) at {model_lib.data_sample_rate(first) or 'the dataset rate'}"
                " Hz: not the same data; ensemble runs whose backbones take the same rate")
        for key in ("audio_dir", "sample_rate", "clip_seconds", "num_folds"):
            if getattr(run.data, key) != getattr(first.data, key):
                raise EvaluationError(
                    f"{directory} used --{key}={getattr(run.data, key)}, {model_dirs[0]} "
                    f"--{key}={getattr(first.data, key)}: not the same data"
                )
    return configs


def _models_by_task(model_dirs, tasks):
    """{task name: [(model_dir, run_dir) of its finished models]}, and the unfinished ones."""
    members = {task.name: [(d, r) for d in model_dirs for r in rundir.finished_models(d, task.name)]
               for task in tasks}
    unfinished = [u for d in model_dirs for task in tasks
                  for u in rundir.unfinished_models(d, task.name)]
    for directory in unfinished:
        print(f"{directory}: no finished model (no {rundir.METRICS_JSON}), left out; rerunning "
              "the train.py command resumes it (summary.md says if it failed)")
    if not any(members.values()):
        raise EvaluationError(
            f"{', '.join(model_dirs)}: no finished model yet (no */{rundir.METRICS_JSON}); let "
            "train.py finish a fold first"
            + (f" ({len(unfinished)} unfinished: rerun the train.py command to resume)"
               if unfinished else "")
        )
    return members, unfinished


@dataclasses.dataclass
class _TaskResult:
    scores: dict  # the ensemble's metrics.scores, with each model's accuracy
    row: dict  # the report's table row
    histories: dict  # {model label: history.csv path}
    first_model: object  # for the gradient maps


def _evaluate_task(task, members, model_dirs, source, test_ds):
    """Every model that held `task` out, alone and averaged (their softmax probabilities)."""
    names = source.class_names
    labels = metrics.labels_of(test_ds)
    run_accuracy, probabilities, histories, first_model = {}, [], {}, None
    for model_dir, run_dir in members:
        _check_held_out(run_dir, rundir.read_metrics(run_dir), task, source)
        model = load_model(run_dir, model_dir)
        model_lib.use_fast_kernels(model)
        first_model = first_model or model
        p = metrics.probabilities(model, test_ds)
        label = _label(model_dirs, model_dir, run_dir)
        run_accuracy[label] = float((p.argmax(axis=1) == labels).mean())
        probabilities.append(p)
        history = os.path.join(run_dir, rundir.HISTORY_CSV)
        if tf.io.gfile.exists(history):
            histories[label] = history
    ensemble = metrics.scores(np.mean(probabilities, axis=0), labels, len(names))
    accuracies = np.array(list(run_accuracy.values()))
    scores = dict(ensemble, models=list(run_accuracy), run_accuracy=run_accuracy,
                  run_mean=float(accuracies.mean()), run_std=float(accuracies.std()))
    row = {"task": task.name, "runs": list(accuracies), "mean": float(accuracies.mean()),
           "std": float(accuracies.std()), "ensemble": ensemble["accuracy"]}
    print(f"{task.name}: " + ", ".join(f"{k} {100 * a:.2f}%" for k, a in run_accuracy.items())
          + (f"; ensemble of {len(run_accuracy)}: {100 * ensemble['accuracy']:.2f}%"
             if len(run_accuracy) > 1 else ""))
    return _TaskResult(scores, row, histories, first_model)


def _open_data(model_dirs, run_config, data_dir, manual_dir):
    """The data the runs were trained on: prepared again from its source, or, when an
    audio folder is gone, read from where it was prepared (which needs no folder)."""
    options = run_config.data
    folder_gone = (options.dataset == "audio_folder" and options.audio_dir
                   and not tf.io.gfile.isdir(options.audio_dir))
    if not folder_gone:
        return datasets.open_source(
            options.dataset, data_dir, manual_dir, audio_dir=options.audio_dir,
            sample_rate=model_lib.data_sample_rate(run_config),
            clip_seconds=options.clip_seconds, num_folds=options.num_folds)
    records = [m["data"] for d in model_dirs for task in rundir.read_run(d).get("tasks", [])
               for r in rundir.finished_models(d, task)
               if "data" in (m := rundir.read_metrics(r))]
    if not records:
        raise EvaluationError(
            f"--audio_dir={options.audio_dir} is gone and no model recorded the data prepared "
            "from it; restore the folder to evaluate")
    record = records[0]
    print(f"{options.audio_dir} is gone: evaluating on the data prepared from it for training "
          f"({record['dataset']} {record['config']} in {data_dir})")
    return datasets.open_prepared(data_dir, record["dataset"], record["config"], record["version"])


def evaluate_runs(model_dirs, data_dir=None, manual_dir=None, batch_size=None,
                  output_dir=None, saliency=0):
    """Evaluates every model of `model_dirs` on its held-out data; ensembles per task.

    Returns the summary and writes `evaluation.json`, `evaluation.md` and
    `report.md` (with figures) into `output_dir` (default: the only model_dir, or
    `runs/ensemble_<dataset>` for several). With `saliency` > 0 also writes that
    many gradient-map figures per class of each task's held-out data.
    """
    model_dirs = [model_dirs] if isinstance(model_dirs, str) else list(model_dirs)
    configs = _read_runs(model_dirs)
    first = configs[0]
    options = first.data
    output_dir = output_dir or (
        model_dirs[0] if len(model_dirs) == 1
        else os.path.join("runs", "ensemble_" + options.dataset.replace("/", "_").replace(":", "_"))
    )
    rundir.check_writable_dir(output_dir, "output_dir")
    if data_dir:
        rundir.check_writable_dir(data_dir, "data_dir")
    source = _open_data(model_dirs, first, data_dir or options.data_dir,
                        manual_dir or options.manual_dir)
    members, unfinished = _models_by_task(model_dirs, source.tasks)
    batch_size = batch_size or first.optim.batch_size

    results = {}
    for task in source.tasks:
        if members[task.name]:
            test_ds = source.load(task, "test", batch_size)
            results[task.name] = _evaluate_task(task, members[task.name], model_dirs, source,
                                                test_ds)
            if saliency:
                _write_saliency(results[task.name].first_model, task, source, test_ds, saliency,
                                os.path.join(output_dir, "saliency", task.name),
                                model_lib.channel_names(first.model.backbone))

    tasks = {name: result.scores for name, result in results.items()}
    ensemble_accuracy = np.array([t["accuracy"] for t in tasks.values()])
    all_runs = np.concatenate([list(t["run_accuracy"].values()) for t in tasks.values()])
    summary = {
        "dataset": options.dataset,
        "model_dirs": model_dirs,
        "backbones": [c.model.backbone for c in configs],
        "class_names": source.class_names,
        "accuracy": {name: t["accuracy"] for name, t in tasks.items()},
        "mean_accuracy": float(ensemble_accuracy.mean()),
        "std_accuracy": float(ensemble_accuracy.std()),
        "mean_run_accuracy": float(all_runs.mean()),
        "tasks": tasks,
        "unfinished": unfinished,
    }
    _write_outputs(output_dir, summary, list(results.values()))
    return summary


def _write_outputs(output_dir, summary, results):
    """evaluation.json, evaluation.md and report.md with its figures."""
    tf.io.gfile.makedirs(output_dir)
    rundir.write_json(os.path.join(output_dir, "evaluation.json"), summary)
    title = f"{summary['dataset']}, {' + '.join(sorted(set(summary['backbones'])))}"
    table = metrics.format_accuracy_table(summary, f"{title}: held-out accuracy")
    rundir.write_text(os.path.join(output_dir, "evaluation.md"), table)
    from keras_audio_cnn import report  # matplotlib only when a report is written

    names = summary["class_names"]
    report.write_report(
        output_dir,
        title=title,
        class_names=names,
        confusion=sum(np.array(t["confusion_matrix"]) for t in summary["tasks"].values()),
        rows=[result.row for result in results],
        histories={k: v for result in results for k, v in result.histories.items()},
        notes=[
            "Each task's models were all trained without its test data; an ensemble "
            "averages their softmax probabilities.",
            f"Model directories: {', '.join(summary['model_dirs'])}.",
        ],
    )
    print(table)


def _write_saliency(model, task, source, test_ds, per_class, out_dir, channel_names):
    from keras_audio_cnn import saliency

    labels = metrics.labels_of(test_ds)
    wanted = []
    for label in np.unique(labels):
        wanted += list(np.flatnonzero(labels == label)[:per_class])
    wanted = sorted(wanted)
    waveforms = np.concatenate([w.numpy() for w, _ in test_ds])[wanted]
    saliency.write_saliency_figures(
        model, waveforms, labels[wanted], source.class_names, out_dir, prefix=f"{task.name}_",
        channel_names=channel_names)
