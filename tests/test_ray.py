"""train.py --ray_address: the grid of models as tasks of a Ray cluster."""

import concurrent.futures
import datetime
import os
import socket
import sys

import pytest
import ray
import tensorflow as tf

from keras_audio_cnn import config, data, grid, ray_runner, rundir
from keras_audio_cnn import evaluation as evaluation_lib
from keras_audio_cnn.errors import ConfigError, RunError, TrainingFailed


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster of 2 CPUs for the module; train.py joins it by address."""
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def runs(cluster, sounds, run_cli, tiny_model, folder_flags):
    """The same two folds trained one after the other and as two Ray tasks.

    Both commands run at once (each preparing its own copy of the data) to save time.
    """
    work = sounds
    flags = [*tiny_model, "--augment=none", "--noprecise_bn", "--folds=1,2"]
    sequential, on_ray = str(work / "sequential"), str(work / "ray")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        one_by_one = pool.submit(run_cli, "train.py", *flags,
                                 *folder_flags(work, data_dir=work / "tfds1"),
                                 f"--model_dir={sequential}")
        as_tasks = pool.submit(run_cli, "train.py", *flags,
                               *folder_flags(work, data_dir=work / "tfds2"),
                               f"--model_dir={on_ray}", f"--ray_address={cluster}")
        one_by_one.result()
        stdout = as_tasks.result().stdout
    return dict(sequential=sequential, on_ray=on_ray, address=cluster, stdout=stdout)


def test_ray_trains_the_folds_side_by_side_into_the_same_summary(runs, read_json):
    sequential = read_json(runs["sequential"], "summary.json")
    on_ray = read_json(runs["on_ray"], "summary.json")
    assert set(on_ray) == set(sequential)
    assert set(on_ray["accuracy"]) == set(sequential["accuracy"]) == {"fold1", "fold2"}
    assert on_ray["failed"] == {} and on_ray["class_names"] == sequential["class_names"]
    assert on_ray["flags"]["ray_address"] == runs["address"]
    assert "Ray: 2 model(s) as tasks of 0 GPU(s) and 1 CPU(s) each" in runs["stdout"]

    intervals = []
    for fold in ("fold1", "fold2"):
        metrics = read_json(runs["on_ray"], fold, "metrics.json")
        assert set(metrics) == set(read_json(runs["sequential"], fold, "metrics.json"))
        assert metrics["accuracy"] == on_ray["accuracy"][fold]
        assert metrics["host"] == socket.gethostname()
        assert os.path.isfile(os.path.join(runs["on_ray"], fold, "model.keras"))
        intervals.append([datetime.datetime.fromisoformat(metrics[k])
                          for k in ("started", "finished")])
    (start1, end1), (start2, end2) = intervals
    assert max(start1, start2) < min(end1, end2), intervals  # trained at the same time


def test_evaluate_reproduces_the_ray_runs_accuracies(runs, run_cli, read_json):
    run_cli("evaluate.py", f"--model_dir={runs['on_ray']}")
    evaluation = read_json(runs["on_ray"], "evaluation.json")
    accuracy = read_json(runs["on_ray"], "summary.json")["accuracy"]
    assert evaluation["accuracy"] == accuracy

    # A model_dir on another file system (a cluster's gs://, here TensorFlow's
    # in-memory ram://) is read and written through tf.io.gfile.
    remote = "ram://ray_run"
    for name in ("run.json", "fold1/model.keras", "fold1/metrics.json", "fold1/history.csv"):
        tf.io.gfile.makedirs(os.path.dirname(f"{remote}/{name}"))
        tf.io.gfile.copy(os.path.join(runs["on_ray"], name), f"{remote}/{name}")
    assert evaluation_lib.evaluate_runs(remote)["accuracy"] == {"fold1": accuracy["fold1"]}
    for name in ("evaluation.json", "evaluation.md", "report.md", "training_curves.png"):
        assert tf.io.gfile.exists(f"{remote}/{name}"), name


def _attempt_number(job):
    with open(os.path.join(job.run_dir, "attempts"), "a+") as f:
        f.write("attempt\n")
        f.seek(0)
        return len(f.readlines())


def flaky_train(job):
    """Stands in for training; what it does depends on the job's key."""
    attempt = _attempt_number(job)
    if job.key == "dies_once" and attempt == 1:
        os._exit(1)  # the worker process is gone, as on a lost node
    if job.key == "raises_once" and attempt == 1:
        raise OSError("shared storage hiccup")
    if job.key == "always_raises":
        raise ValueError("the data is broken\nsecond line of the message")
    if job.key == "nan":
        raise TrainingFailed("nan: training stopped: epoch 1: NaN loss")
    return {"accuracy": 0.5, "attempt": attempt}


def test_tasks_are_retried_and_failures_reported_not_raised(cluster, tmp_path):
    del cluster  # the runner uses the cluster this process is connected to
    keys = ["dies_once", "raises_once", "always_raises", "nan", "done"]
    jobs = [grid.Job(key, data.Task(key, "train", "test"), str(tmp_path / key), 0)
            for key in keys]
    for job in jobs:
        os.makedirs(job.run_dir)
    rundir.write_json(os.path.join(tmp_path, "done", "metrics.json"), {"accuracy": 0.25})
    options = config.RayConfig(address="in this process")

    results, failures = ray_runner.RayRunner(options).run(jobs, flaky_train)

    assert results == {"dies_once": {"accuracy": 0.5, "attempt": 2},
                       "raises_once": {"accuracy": 0.5, "attempt": 2},
                       "done": {"accuracy": 0.25}}
    assert list(failures) == ["always_raises", "nan"]  # in job order
    assert failures["always_raises"] == (
        "always_raises: ValueError: the data is broken (Ray retries: 2)")
    assert failures["nan"] == "nan: training stopped: epoch 1: NaN loss"

    def attempts(key):
        path = tmp_path / key / "attempts"
        return len(path.read_text().splitlines()) if path.exists() else 0

    assert attempts("always_raises") == 3  # the first try and --ray_retries=2
    assert attempts("nan") == 1  # a NaN loss would fail again: not retried
    assert attempts("done") == 0  # its metrics.json exists: not submitted


def test_ray_options_are_checked_before_anything_is_written(tmp_path, monkeypatch):
    model_dir, data_dir = tmp_path / "m", tmp_path / "d"
    base = config.TrainConfig().replace(ray_address="local", model_dir=str(model_dir),
                                        data_dir=str(data_dir))
    for field, value in [("ray_retries", -1), ("ray_cpus_per_task", 0),
                         ("ray_gpus_per_task", -1)]:
        with pytest.raises(ConfigError, match=f"--{field}={value} must be"):
            grid.run(base.replace(**{field: value}))
    assert not model_dir.exists() and not data_dir.exists()

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(RunError) as error:
        grid.run(base)
    assert str(error.value) == (
        '--ray_address needs Ray, which is not installed: pip install -e ".[ray]"')
