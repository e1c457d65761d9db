"""A run: the grid of models (tasks of the protocol x runs), trained, then summarised.

`run(config)` is what `train.py` does: check every option that needs no data,
prepare the dataset, write `run.json`, plan the jobs, hand them to a runner
(`local_runner`, or `ray_runner` with `--ray_address`) and write the summary.
"""

import dataclasses
import datetime
import os
import platform
import time

import keras
import numpy as np
import tensorflow as tf

from keras_audio_cnn import (data, datasets, devices, local_runner, metrics, provenance, rundir,
                             runner)
from keras_audio_cnn import model as model_lib
from keras_audio_cnn.errors import RunError, UserError


@dataclasses.dataclass(frozen=True)
class Job:
    """One model of a run's grid: a task of the protocol, trained with one seed."""

    key: str  # "fold1", or "fold1/run2" among several runs
    task: data.Task
    run_dir: str
    seed: int


def select_tasks(tasks, requested, dataset):
    """The tasks to run: all by default, else those of the requested folds."""
    if not requested:
        return list(tasks)
    by_fold = {int(t.name[4:]): t for t in tasks if t.name.startswith("fold")}
    if not by_fold:
        raise RunError(
            f"--folds does not apply to {dataset}: its protocol is "
            f"{', '.join(t.name for t in tasks)}; leave --folds out"
        )
    available = sorted(by_fold)
    bad = [k for k in requested if k not in by_fold]
    if bad:
        raise RunError(
            f"fold {bad[0]} is out of range: {dataset} has folds "
            f"{available[0]}..{available[-1]}"
        )
    return [by_fold[k] for k in sorted(set(requested))]


def _task_number(task):
    return int(task.name[4:]) if task.name.startswith("fold") else 0


def plan_jobs(tasks, model_dir, runs=1, seed=0):
    """The grid of one run: every task times every run number, in order.

    Fold k's run r trains with seed `seed + 1000 (r - 1) + k`.
    """
    jobs = []
    for task in tasks:
        for run_number in range(1, runs + 1):
            key, run_dir = rundir.job_location(model_dir, task.name, run_number, runs)
            job_seed = seed + 1000 * (run_number - 1) + _task_number(task)
            jobs.append(Job(key, task, run_dir, job_seed))
    return jobs


def _make_runner(config):
    if not config.ray.address:
        return local_runner.LocalRunner()
    from keras_audio_cnn import ray_runner  # imports Ray, an optional dependency

    return ray_runner.RayRunner(config.ray)


def check_options(config):
    """Refuses options that cannot work, before any data is prepared or output written.

    Returns the run's `devices.Settings`.
    """
    if config.ray.address:
        from keras_audio_cnn import ray_runner

        ray_runner.import_ray()  # Ray is an optional dependency: say so before data work
    datasets.check_dataset_name(config.data.dataset, config.data.audio_dir,
                                model_lib.data_sample_rate(config))
    planned = datasets.planned_tasks(config.data.dataset, config.data.num_folds)
    if planned:  # --folds=9 of ESC-50, before a 600 MB download
        select_tasks(planned, list(config.folds), config.data.dataset)
    settings = devices.settings(config.precision, config.jit_compile, config.deterministic)
    options = config.model
    model_lib.check_options(options.backbone, options.weights, options.trainable,
                            options.reinit_from)
    return settings


def _recorded_run(config, model_dir):
    """The run.json of an earlier run in `model_dir`, or None (or with --overwrite).

    Raises:
        RunError: the earlier run was trained with options that change its models
            (rerunning must not mix its models with others, nor relabel them).
    """
    path = os.path.join(model_dir, rundir.RUN_JSON)
    if not tf.io.gfile.exists(path):
        return None
    recorded = rundir.read_json(path)
    if config.overwrite:
        return recorded
    fix = "rerun with those options to resume it, pass --overwrite to start afresh, or use " \
          "another --model_dir"
    try:
        differences = config.model_differences(recorded)
    except UserError as error:
        raise RunError(f"{model_dir} holds a run whose recorded options this version "
                       f"refuses ({error}); {fix}") from None
    if differences:
        raise RunError(f"{model_dir} holds a run trained with other options: "
                       f"{', '.join(differences)}; {fix}")
    return recorded


def _check_finished_data(jobs, source):
    """Refuses to keep a finished model that trained on other data than `source` now holds
    (an audio folder changed since): the run would mix two partitions of the data."""
    for job in jobs:
        finished = rundir.read_metrics(job.run_dir)
        changed = finished and provenance.problem(job.run_dir, finished, source, job.task)
        if changed:
            raise RunError(f"{changed}; train the run again with --overwrite, or use another "
                           "--model_dir")


def run(config):
    """Trains one model per task of the dataset's protocol (and run) and writes the summary.

    Every check that needs no data comes first; then the data is prepared, and the
    run directory is written under its lock (`rundir.RunLock`). A rerun into the same
    --model_dir resumes the run (finished models are kept) and adds the folds asked
    for; options that would change its models are refused unless --overwrite.

    Raises:
        RunError: after writing the summary, if any model failed.
    """
    start = time.time()
    settings = check_options(config)
    model_dir = config.resolved_model_dir()
    rundir.check_writable_dir(model_dir, "model_dir")
    if config.data.data_dir:
        rundir.check_writable_dir(config.data.data_dir, "data_dir")
    lock = rundir.RunLock(model_dir)
    lock.check()
    _recorded_run(config, model_dir)
    if settings.note:
        print(settings.note)
    model_lib.fetch_weights(config.model.backbone, config.model.weights)
    options = config.data
    source = datasets.open_source(
        options.dataset, options.data_dir, options.manual_dir, audio_dir=options.audio_dir,
        sample_rate=model_lib.data_sample_rate(config), clip_seconds=options.clip_seconds,
        num_folds=options.num_folds,
    )
    tasks = select_tasks(source.tasks, list(config.folds), options.dataset)
    if source.skipped_files:
        print(f"{options.dataset}: {len(source.skipped_files)} undecodable file(s) left out: "
              f"{', '.join(source.skipped_files)}")
    if source.suspect_files:
        print(f"{options.dataset}: {len(source.suspect_files)} file(s) kept that look damaged "
              f"(see summary.md): {', '.join(sorted(source.suspect_files))}")

    with lock:
        recorded = _recorded_run(config, model_dir)  # again: another run may have ended
        if recorded and config.overwrite:
            print(f"--overwrite: removing the earlier run in {model_dir}")
            rundir.clear_run(model_dir, set(recorded.get("tasks", [])) | {t.name for t in tasks})
        elif recorded:  # the folds trained before stay part of the run
            earlier = set(recorded.get("tasks", []))
            tasks = [t for t in source.tasks if t.name in earlier or t in tasks]
        jobs = plan_jobs(tasks, model_dir, config.runs, config.seed)
        _check_finished_data(jobs, source)
        record = dict(config.to_flags(), model_dir=model_dir, tasks=[t.name for t in tasks],
                      data_dir=str(source.builder.data_dir_root))
        rundir.write_json(os.path.join(model_dir, rundir.RUN_JSON), record)
        results, failures = _make_runner(config).run(jobs, runner.JobTrainer(config, source))
        summary = write_summary(config, source, record, jobs, results, failures, start)
    if failures:
        first = next(iter(failures.values()))
        raise RunError(
            f"{len(failures)} of {len(jobs)} model(s) failed, first {first} "
            f"(all in {os.path.join(model_dir, rundir.SUMMARY_MD)})")
    return summary


def library_versions():
    import librosa
    import tensorflow_datasets as tfds

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tensorflow_datasets": tfds.__version__,
        "numpy": np.__version__,
        "librosa": librosa.__version__,
    }


def write_summary(config, source, record, jobs, results, failures, start):
    """Writes `summary.json` and `summary.md`: every job is either finished or failed."""
    finished = {job.key: results[job.key] for job in jobs if job.key in results}
    missing = [job.key for job in jobs if job.key not in results and job.key not in failures]
    if missing:  # a bug, never a silent gap in the summary
        raise AssertionError(f"jobs without a result: {missing}")
    summary = metrics.summarize(finished) if finished else {
        "accuracy": {}, "mean_accuracy": None, "std_accuracy": None}
    summary.update(
        failed=failures,
        dataset=config.data.dataset,
        backbone=config.model.backbone,
        class_names=source.class_names,
        sample_rate=source.sample_rate,
        num_samples=source.num_samples,
        skipped_files=source.skipped_files,
        suspect_files=source.suspect_files,
        flags=record,
        versions=library_versions(),
        elapsed_seconds=round(time.time() - start, 1),
        finished=datetime.datetime.now().isoformat(timespec="seconds"),
    )
    model_dir = record["model_dir"]
    rundir.write_json(os.path.join(model_dir, rundir.SUMMARY_JSON), summary)
    title = f"{config.data.dataset}, {config.model.backbone}"
    table = metrics.format_accuracy_table(summary, title)
    lines = [table]
    if source.skipped_files:
        lines.append(f"\nUndecodable files left out: {', '.join(source.skipped_files)}\n")
    if source.suspect_files:
        lines.append(f"\n{len(source.suspect_files)} file(s) kept that look damaged:\n\n")
        lines += [f"- {name}: {reason}\n" for name, reason in sorted(source.suspect_files.items())]
    lines.append("\n## Flags\n\n")
    lines += [f"- `{k}`: `{v}`\n" for k, v in record.items()]
    lines.append("\n## Versions\n\n")
    lines += [f"- {k} {v}\n" for k, v in summary["versions"].items()]
    lines.append(f"\nElapsed: {summary['elapsed_seconds']} s\n")
    rundir.write_text(os.path.join(model_dir, rundir.SUMMARY_MD), "".join(lines))
    print(table)
    return summary
