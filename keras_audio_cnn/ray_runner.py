"""A run's jobs (folds x runs) as tasks of a Ray cluster: `train.py --ray_address=...`.

Each job is one Ray task: it asks for its GPUs and CPUs, reopens the dataset the
driver prepared (read-only, from the prepared directory, so `data_dir` must be
storage every node sees at the same path, or `gs://...`), trains under a
`tf.distribute.MirroredStrategy` over the devices Ray gave it and writes the
model under the shared `model_dir`. The driver collects every task's metrics or
failure and writes the summary, as the local run does.

Why tasks and not one model split across hosts: Keras 3 does not train under
`tf.distribute.MultiWorkerMirroredStrategy` (keras-team/keras#20585), and a run is
a grid of independent models anyway.

Ray is an optional dependency (`pip install -e ".[ray]"`), imported only here.
"""

import dataclasses
import os

import tensorflow as tf

from keras_audio_cnn import runner
from keras_audio_cnn.errors import RunError, TrainingFailed


def import_ray():
    """The `ray` module, or a one-line `RunError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RunError(
            '--ray_address needs Ray, which is not installed: pip install -e ".[ray]"'
        ) from None
    return ray


def _local_path(path):
    """An absolute path for local paths, so a worker in another directory finds them."""
    return path if "://" in path else os.path.abspath(path)


def _attempt(train, cpus, job):
    """One attempt at a job on a worker: `(metrics, None)`, or `(None, message)` for a
    NaN loss.

    A NaN loss is returned, not raised, so Ray does not retry it: it would fail
    the same way again. Any other exception is raised and retried.
    """
    import ray

    if not ray.get_gpu_ids():
        # Ray leaves CUDA_VISIBLE_DEVICES alone for a task without GPUs; without
        # this TensorFlow would take memory on every GPU of the node.
        tf.config.set_visible_devices([], "GPU")
    # As many threads as the CPUs the task holds, not one per core of the node.
    tf.config.threading.set_intra_op_parallelism_threads(cpus)
    try:
        return train(job), None
    except TrainingFailed as error:
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
        raise RunError(
            f"--ray_address={address}: no Ray cluster there ({reason}); start one with "
            "`ray start --head`, or use --ray_address=local for this machine"
        ) from None


@dataclasses.dataclass
class RayRunner:
    """Trains jobs as Ray tasks, side by side (see `runner.Runner`).

    Connects to `options.address` unless Ray is already initialised in this
    process (then it uses that cluster and leaves it connected). A NaN loss fails
    its job at once; any other exception, or a worker that died, is retried
    `options.retries` times first.

    Args:
        options: the run's `config.RayConfig`.
    """

    options: object

    def run(self, jobs, train):
        ray = import_ray()
        if isinstance(train, runner.JobTrainer):
            train = train.portable()
        jobs = [dataclasses.replace(job, run_dir=_local_path(job.run_dir)) for job in jobs]
        results, to_run = runner.split_finished(jobs)
        failures = {}
        if not to_run:
            return results, failures
        connected_here = not ray.is_initialized()
        if connected_here:
            _connect(ray, self.options.address)
        try:
            self._run_tasks(ray, to_run, train, results, failures)
        finally:
            if connected_here:
                ray.shutdown()
        return results, {job.key: failures[job.key] for job in jobs if job.key in failures}

    def _run_tasks(self, ray, jobs, train, results, failures):
        total = ray.cluster_resources()
        gpus = self.options.gpus_per_task
        if gpus is None:
            gpus = 1 if total.get("GPU", 0) else 0
        cpus, retries = self.options.cpus_per_task, self.options.retries
        task = ray.remote(_attempt).options(
            num_cpus=cpus, num_gpus=gpus, max_retries=retries, retry_exceptions=True)
        print(f"Ray: {len(jobs)} model(s) as tasks of {gpus} GPU(s) and {cpus} CPU(s) "
              f"each, on a cluster of {total.get('GPU', 0):g} GPU(s) and "
              f"{total.get('CPU', 0):g} CPU(s)")
        if not any(node["Alive"] and node["Resources"].get("GPU", 0) >= gpus
                   and node["Resources"].get("CPU", 0) >= cpus for node in ray.nodes()):
            # Not an error: an autoscaling cluster may still add such a node.
            print(f"Ray: no node has {gpus} GPU(s) and {cpus} CPU(s); the tasks wait "
                  "until one joins the cluster")
        pending = {task.remote(train, cpus, job): job for job in jobs}
        while pending:
            [done], _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done)
            try:
                metrics, message = ray.get(done)
            except ray.exceptions.RayError as error:
                print(f"{job.key}: FAILED (Ray retries: {retries}):\n{error}")
                failures[job.key] = f"{job.key}: {_one_line(error)} (Ray retries: {retries})"
                continue
            if message is None:
                results[job.key] = metrics
                print(f"{job.key}: done on {metrics.get('host', '?')}, "
                      f"accuracy {100 * metrics['accuracy']:.2f}%")
            else:
                print(f"{job.key}: FAILED: {message}")
                failures[job.key] = message
