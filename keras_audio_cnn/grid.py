"""A run's grid of models (folds x runs) as tasks of a Ray cluster.

`train.py --ray_address=...` trains each `training.Job` as one Ray task instead of
one after another: a task asks for its GPUs and CPUs, reopens the dataset the
driver prepared (read-only, from the prepared directory, so `data_dir` must be
storage every node sees at the same path, or `gs://...`), builds a
`tf.distribute.MirroredStrategy` over the devices Ray gave it and calls
`training.train_job`, which writes the model under the shared `model_dir`.
The driver collects every task's metrics or failure and writes the summary, as
the sequential run does.

Why tasks and not one model split across hosts: Keras 3 does not train under
`tf.distribute.MultiWorkerMirroredStrategy` (keras-team/keras#20585), and a run is
a grid of independent models anyway.

Ray is an optional dependency (`pip install -e ".[ray]"`), imported only here.
"""

import dataclasses
import functools
import os

import tensorflow as tf

from keras_audio_cnn import training


def import_ray():
    """The `ray` module, or a one-line `RunError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise training.RunError(
            '--ray_address needs Ray, which is not installed: pip install -e ".[ray]"'
        ) from None
    return ray


def check_options(config):
    """Refuses Ray options that cannot work, before any data is prepared."""
    import_ray()
    if config.ray_retries < 0:
        raise training.RunError(f"--ray_retries={config.ray_retries} must be 0 or more")
    if config.ray_cpus_per_task < 1:
        raise training.RunError(
            f"--ray_cpus_per_task={config.ray_cpus_per_task} must be at least 1")
    if config.ray_gpus_per_task is not None and config.ray_gpus_per_task < 0:
        raise training.RunError(
            f"--ray_gpus_per_task={config.ray_gpus_per_task} must be 0 or more")


def _local_path(path):
    """An absolute path for local paths, so a worker in another directory finds them."""
    return path if "://" in path else os.path.abspath(path)


def train_on_worker(source, prepared_dir, config, job):
    """What one Ray task runs by default: `job` on the devices Ray gave this task.

    `source` is the driver's `data.Source` without its builder; the data is read
    from `prepared_dir` with `tfds.builder_from_directory`, which needs neither
    the builder's code nor the raw audio, and prepares nothing.
    """
    import ray
    import tensorflow_datasets as tfds

    if not ray.get_gpu_ids():
        # Ray leaves CUDA_VISIBLE_DEVICES alone for a task without GPUs; without
        # this TensorFlow would take memory on every GPU of the node.
        tf.config.set_visible_devices([], "GPU")
    # As many threads as the CPUs the task holds, not one per core of the node.
    tf.config.threading.set_intra_op_parallelism_threads(config.ray_cpus_per_task)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    source = dataclasses.replace(source, builder=tfds.builder_from_directory(prepared_dir))
    strategy = tf.distribute.MirroredStrategy()  # the GPUs Ray made visible, or the CPU
    return training.train_job(config, source, job, strategy)


def _attempt(train, config, job):
    """One attempt at a job: `(metrics, None)`, or `(None, message)` for a NaN loss.

    A NaN loss is returned, not raised, so Ray does not retry it: it would fail
    the same way again. Any other exception is raised and retried.
    """
    try:
        return train(config, job), None
    except training.TrainingFailed as error:
        return None, str(error)


def _one_line(error):
    """The first line of what went wrong in a task, without Ray's traceback."""
    cause = getattr(error, "cause", None)  # RayTaskError: the task's own exception
    described = error if cause is None else cause
    text = f"{type(described).__name__}: {described}"
    return next((line.strip() for line in text.splitlines() if line.strip()), text)


def _connect(ray, address):
    """Connects to the cluster at `address`; "local" starts one on this machine."""
    try:
        if address == "local":
            ray.init(address="local", include_dashboard=False)
        else:
            ray.init(address=address)
    except (ConnectionError, SystemExit) as error:
        # "auto" without a cluster raises ConnectionError at once; an address where
        # nothing answers makes Ray exit (status 15) after its GCS timeout, minutes later.
        reason = _one_line(error) if isinstance(error, ConnectionError) else "nothing answered"
        raise training.RunError(
            f"--ray_address={address}: no Ray cluster there ({reason}); start one with "
            "`ray start --head`, or use --ray_address=local for this machine"
        ) from None


def run_on_ray(config, source, jobs, train=None):
    """Trains the jobs as Ray tasks; what `training.run_jobs` does, in parallel.

    Connects to `config.ray_address` unless Ray is already initialised in this
    process (then it uses that cluster and leaves it connected).

    Args:
        config: the run's `training.TrainConfig`.
        source: the prepared `data.Source`.
        jobs: `training.Job`s; one whose `metrics.json` exists is read, not
            submitted again.
        train: what a task calls, `train(config, job) -> metrics`; by default
            `train_on_worker` on `source`. Tests pass their own.

    Returns:
        `(metrics by job key, one-line failure message by job key)`: every job is
        in one of them. A NaN loss fails its job at once; any other exception, or
        a worker that died, is retried `config.ray_retries` times first.
    """
    ray = import_ray()
    if train is None:
        prepared_dir = _local_path(os.fspath(source.builder.data_dir))
        train = functools.partial(
            train_on_worker, dataclasses.replace(source, builder=None), prepared_dir)
    weights = config.weights
    if os.path.isfile(weights):  # a weights file: the same path on every node
        config = dataclasses.replace(config, weights=os.path.abspath(weights))
    jobs = [dataclasses.replace(job, run_dir=_local_path(job.run_dir)) for job in jobs]

    results, failures = {}, {}
    to_run = []
    for job in jobs:
        metrics = training.finished_metrics(job)
        if metrics is None:
            to_run.append(job)
        else:
            print(f"{job.key}: already trained, reading {job.run_dir}/metrics.json")
            results[job.key] = metrics
    if not to_run:
        return results, failures

    connected_here = not ray.is_initialized()
    if connected_here:
        _connect(ray, config.ray_address)
    try:
        total = ray.cluster_resources()
        gpus = config.ray_gpus_per_task
        if gpus is None:
            gpus = 1 if total.get("GPU", 0) else 0
        cpus = config.ray_cpus_per_task
        task = ray.remote(_attempt).options(
            num_cpus=cpus, num_gpus=gpus, max_retries=config.ray_retries,
            retry_exceptions=True,
        )
        print(f"Ray: {len(to_run)} model(s) as tasks of {gpus} GPU(s) and {cpus} CPU(s) "
              f"each, on a cluster of {total.get('GPU', 0):g} GPU(s) and "
              f"{total.get('CPU', 0):g} CPU(s)")
        if not any(node["Alive"] and node["Resources"].get("GPU", 0) >= gpus
                   and node["Resources"].get("CPU", 0) >= cpus for node in ray.nodes()):
            # Not an error: an autoscaling cluster may still add such a node.
            print(f"Ray: no node has {gpus} GPU(s) and {cpus} CPU(s); the tasks wait "
                  "until one joins the cluster")
        pending = {task.remote(train, config, job): job for job in to_run}
        while pending:
            [done], _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done)
            try:
                metrics, message = ray.get(done)
            except ray.exceptions.RayError as error:
                print(f"{job.key}: FAILED (Ray retries: {config.ray_retries}):\n{error}")
                failures[job.key] = (f"{job.key}: {_one_line(error)} "
                                     f"(Ray retries: {config.ray_retries})")
                continue
            if message is None:
                results[job.key] = metrics
                print(f"{job.key}: done on {metrics.get('host', '?')}, "
                      f"accuracy {100 * metrics['accuracy']:.2f}%")
            else:
                print(f"{job.key}: FAILED: {message}")
                failures[job.key] = message
    finally:
        if connected_here:
            ray.shutdown()
    return results, {job.key: failures[job.key] for job in jobs if job.key in failures}
