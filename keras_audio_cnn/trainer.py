"""Training one model of a run: data, the recipe, fit, precise BN, evaluation, outputs.

One training step's path, from `train.py` to the saved model:

    train.py           flags -> config.TrainConfig
    grid.run           opens the dataset, plans the jobs (folds x runs), picks a runner
    runner.JobTrainer  per job: determinism, the distribution strategy
    trainer.train_job  this module: one job, from its data to its finished directory
      augment.AugmentPlan         what --augment needs of the data, model and loss
      recipe.compile_training_model   the model, weight decay, Adam, the dtype policy
      keras fit                   BackupAndRestore, CSVLogger, TensorBoard, step decay
      recipe.precise_batch_norm, metrics.evaluate
      rundir.publish / mark_finished  model.keras, saved_model/, then metrics.json
"""

import dataclasses
import datetime
import math
import os
import socket

import keras
import numpy as np
import tensorflow as tf

from keras_audio_cnn import augment, backup, devices, export, metrics as metrics_lib, recipe
from keras_audio_cnn import model as model_lib
from keras_audio_cnn import rundir
from keras_audio_cnn.errors import TrainingFailed


class _StopOnNaN(keras.callbacks.TerminateOnNaN):
    """`TerminateOnNaN(raise_error=True)` whose error names the epoch.

    It raises mid-epoch, so `BackupAndRestore` keeps the last completed epoch.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        try:
            super().on_batch_end(batch, logs)
        except RuntimeError:
            loss = (logs or {}).get("loss")
            raise TrainingFailed(
                f"at epoch {self.epoch + 1}, batch {batch + 1}: the loss became {loss}") from None


def train_job(config, source, job, strategy, settings=None):
    """Trains one job of a run's grid (a `grid.Job` that is not finished yet).

    Raises:
        TrainingFailed: the loss became NaN or infinite; the job's `backup/` of its
            last completed epoch is kept for inspection, and the message says so.
    """
    task = job.task
    tf.io.gfile.makedirs(job.run_dir)
    print(f"{job.key}: training on {task.train}"
          + (f" (fold {task.fold} left out)" if task.fold else "")
          + (f", validating on {task.valid}" if task.valid else "")
          + f", testing on {task.test}"
          + (f" fold {task.fold}" if task.fold else "")
          + f" ({strategy.num_replicas_in_sync} replica(s) x batch {config.optim.batch_size})")
    try:
        metrics = train_model(config, source, job, strategy, settings)
    except TrainingFailed as error:
        backup_dir = os.path.join(job.run_dir, rundir.BACKUP)
        kept = (f"the last completed epoch is kept in {backup_dir}"
                if tf.io.gfile.isdir(backup_dir) else "no epoch completed")
        raise TrainingFailed(
            f"{job.key}: training stopped {error}; {kept}; lower --learning_rate "
            f"or check the data, then rerun to resume") from None
    print(f"{job.key}: accuracy {100 * metrics['accuracy']:.2f}%")
    return metrics


@dataclasses.dataclass
class _Data:
    """The datasets of one job."""

    train: tf.data.Dataset  # what fit trains on, in the training model's input form
    valid: tf.data.Dataset | None
    ordered_train: tf.data.Dataset  # (waveform, label), one device's batches, unshuffled
    test: tf.data.Dataset


def _datasets(config, source, job, plan, replicas):
    """Each replica gets `batch_size` clips a step; statistics, precise BN and
    evaluation run on one device, a replica's batch at a time.

    Several replicas split each batch, and a last, partial batch can leave one of
    them no clip, which the spectrogram's reflect padding cannot take: with
    several, it is dropped. Batches are reshuffled every epoch, so no clip is
    left out for good; the test accuracy always counts every clip.
    """
    batch, drop = config.optim.batch_size * replicas, replicas > 1
    classes = len(source.class_names)
    task = job.task
    return _Data(
        train=plan.train_data(source, task, batch, num_classes=classes, seed=job.seed,
                              drop_remainder=drop),
        valid=(plan.valid_data(source, task, batch, num_classes=classes, drop_remainder=drop)
               if task.valid else None),
        ordered_train=source.load(task, "train", config.optim.batch_size),
        test=source.load(task, "test", config.optim.batch_size),
    )


def _fit(config, fitted, data, job, learning_rate):
    """Trains `fitted`, resuming from `run_dir/backup` after a kill."""
    optim = config.optim
    history_path = os.path.join(job.run_dir, rundir.HISTORY_CSV)
    # After a kill, the backup restores the last completed epoch (or the one before,
    # if the last is damaged) and history.csv keeps the rows of the epochs before
    # it; the epochs that follow append to it. (The backup is saved before
    # CSVLogger logs, so every row of history.csv has its backup.)
    schedule = recipe.step_decay(learning_rate, optim.lr_decay_epochs, optim.lr_decay_factor)
    fitted.fit(
        data.train,
        validation_data=data.valid,
        epochs=optim.epochs,
        verbose=config.verbose,
        shuffle=False,  # the training data is a tf.data pipeline that shuffles itself
        callbacks=[
            backup.Backup(job.run_dir, history_path, job.key),
            keras.callbacks.CSVLogger(history_path, append=True),
            keras.callbacks.TensorBoard(os.path.join(job.run_dir, rundir.LOGS)),
            keras.callbacks.LearningRateScheduler(schedule),
            _StopOnNaN(raise_error=True),
        ],
    )


def _check_finite_weights(model, epochs):
    """A NaN or infinite weight fails the model, as a NaN loss does (the loss can stay
    finite while a weight is not, e.g. behind a ReLU)."""
    bad = [v.path for v in model.weights if not np.isfinite(keras.ops.convert_to_numpy(v)).all()]
    if bad:
        raise TrainingFailed(f"after epoch {epochs}: {len(bad)} weight(s) are NaN or infinite, "
                             f"first {bad[0]}")


def _save(model, run_dir, source):
    """`model.keras` and the serving `saved_model/`, each renamed into place whole."""
    rundir.publish(run_dir, rundir.MODEL_KERAS, model.save)
    rundir.publish(run_dir, rundir.SAVED_MODEL, lambda path: export.export_serving(
        model, path, source.num_samples, source.class_names))


def train_model(config, source, job, strategy, settings=None):
    """Trains one model of the protocol, evaluates it on its test part, saves it.

    The learning rate follows `config.optim.lr_scaling` for the strategy's
    replicas (`recipe.scaled_learning_rate`). `settings` (a `devices.Settings`)
    defaults to those of `config` on this process's devices. Under a mixed dtype
    policy the trained weights are copied into the same model built in float32,
    which is what is evaluated, saved and exported.

    Returns:
        The model's metrics, as written to its `metrics.json`.
    """
    settings = settings or devices.settings(config.precision, config.jit_compile,
                                            config.deterministic)
    started = datetime.datetime.now().isoformat(timespec="milliseconds")
    keras.utils.set_random_seed(job.seed)
    plan = augment.AugmentPlan.of(config)
    replicas = strategy.num_replicas_in_sync
    optim = config.optim
    learning_rate = recipe.scaled_learning_rate(optim.learning_rate, optim.lr_scaling, replicas)
    data = _datasets(config, source, job, plan, replicas)

    mean = variance = None
    if model_lib.family(config.model.backbone).NEEDS_IMAGE_STATISTICS:
        mean, variance = recipe.image_statistics(source.sample_rate, source.num_samples,
                                                 data.ordered_train)
    model, fitted, build = recipe.compile_training_model(
        config.model, plan, settings, num_classes=len(source.class_names),
        sample_rate=source.sample_rate, num_samples=source.num_samples,
        learning_rate=learning_rate, weight_decay=optim.weight_decay, seed=job.seed,
        mean=mean, variance=variance, strategy=strategy, amsgrad=optim.amsgrad)
    _fit(config, fitted, data, job, learning_rate)
    _check_finite_weights(model, optim.epochs)
    jit_compile = fitted.jit_compile  # Keras turns XLA off for layers that declare no support
    if settings.dtype_policy != "float32":
        model = recipe.float32_copy(model, build, strategy)
    # Frozen BatchNorm layers keep their statistics.
    bn_layers = recipe.precise_batch_norm(model, data.ordered_train) if optim.precise_bn else 0

    metrics = metrics_lib.evaluate(model, data.test, len(source.class_names))
    if not math.isfinite(metrics["loss"]):
        raise TrainingFailed(f"after training: the test loss is {metrics['loss']}")
    task = job.task
    metrics.update(task=task.name, train_split=task.train, test_split=task.test,
                   valid_split=task.valid, carved_fold=task.fold,
                   fold_assignment=source.fold_assignment, data=source.data_record(task),
                   seed=job.seed,
                   precise_bn_layers=bn_layers, class_names=source.class_names,
                   sample_rate=source.sample_rate, num_samples=source.num_samples,
                   replicas=replicas, batch_size_per_replica=optim.batch_size,
                   global_batch_size=optim.batch_size * replicas,
                   learning_rate=learning_rate, lr_scaling=optim.lr_scaling,
                   dtype_policy=settings.dtype_policy, jit_compile=jit_compile)
    # metrics.json comes last: a directory without it holds no finished model
    # (evaluate.py ignores it; a rerun trains it and overwrites the leftovers).
    _save(model, job.run_dir, source)
    # Where and when it trained: with --ray_address, which host ran the model and
    # whether models trained side by side.
    metrics.update(host=socket.gethostname(), started=started,
                   finished=datetime.datetime.now().isoformat(timespec="milliseconds"))
    rundir.mark_finished(job.run_dir, metrics)
    rundir.remove(os.path.join(job.run_dir, rundir.BACKUP))
    return metrics
