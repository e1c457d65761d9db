"""Running a run's jobs: the one interface of every runner, and the steps they share.

A runner takes the jobs of a grid (`grid.Job`s) and a `train(job) -> metrics`
callable, and returns `(metrics by job key, one-line failure message by job key)`:
every job ends in exactly one of them, and one job failing never stops the others.
Two runners exist: `local_runner.LocalRunner` (one job after another on this
machine's devices) and `ray_runner.RayRunner` (each job a task of a Ray cluster).
A third (a SLURM array, Kubernetes jobs) would be one more module with a `run`.

What every runner shares is here: the jobs that are finished already are read, not
trained again (`split_finished`), and `JobTrainer` trains one job in whatever
process runs it (op determinism, the distribution strategy, the trainer).
"""

import dataclasses
import os
import typing

import tensorflow as tf

from keras_audio_cnn import devices, rundir, trainer


class Runner(typing.Protocol):
    def run(self, jobs, train):
        """Runs `train(job)` for every job; returns `(results, failures)` by job key."""


def split_finished(jobs):
    """`(metrics of the finished jobs by key, the jobs still to train)`.

    A job is finished when its `metrics.json` exists (`rundir.is_finished`); a
    backup left by a kill just after that file was written is removed.
    """
    results, to_run = {}, []
    for job in jobs:
        metrics = rundir.read_metrics(job.run_dir)
        if metrics is None:
            to_run.append(job)
        else:
            print(f"{job.key}: already trained, reading {job.run_dir}/{rundir.METRICS_JSON}")
            rundir.remove(os.path.join(job.run_dir, rundir.BACKUP))
            results[job.key] = metrics
    return results, to_run


@dataclasses.dataclass
class JobTrainer:
    """`train(job)` for the runners: one job of `config` on `source`, in this process.

    The process gets TensorFlow op determinism if the run asks for it, and one
    `tf.distribute.MirroredStrategy` over its devices (every visible GPU, else the
    CPU), made at its first job and kept for the next ones.
    """

    config: typing.Any  # config.TrainConfig
    source: typing.Any  # data.Source
    _strategy: typing.Any = dataclasses.field(default=None, repr=False, compare=False)

    def __call__(self, job):
        if self._strategy is None:
            if self.config.deterministic:
                tf.config.experimental.enable_op_determinism()
            self._strategy = tf.distribute.MirroredStrategy()
        settings = devices.settings(self.config.precision, self.config.jit_compile,
                                    self.config.deterministic)
        return trainer.train_job(self.config, self.source.reopened(), job, self._strategy,
                                 settings)

    def portable(self):
        """A copy to send to other machines: no open builder, no strategy, absolute
        paths (the data is reopened from its prepared directory where it runs)."""
        config = self.config
        weights = config.model.weights
        if os.path.isfile(weights):  # a weights file: the same path on every node
            config = config.replace(weights=os.path.abspath(weights))
        return JobTrainer(config, self.source.detached())

    def __getstate__(self):
        return dict(self.__dict__, _strategy=None)
