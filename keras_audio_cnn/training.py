"""Cross-validated training with the paper's recipe, fold by fold."""

import dataclasses
import datetime
import functools
import json
import os
import platform
import socket
import time

import keras
import numpy as np
import tensorflow as tf

from keras_audio_cnn import augment, data, devices, frontend, fused_batch_norm, model as model_lib


@dataclasses.dataclass
class TrainConfig:
    """Everything one `train.py` run depends on; defaults are the paper's recipe.

    Palanisamy et al. (2020) and their reference code: Adam, learning rate 1e-4,
    weight decay 1e-3 (PyTorch's coupled L2), batch 32 on one GPU, 70 epochs,
    learning rate times 0.1 every 30 epochs. `batch_size` is per replica, so
    every device sees the paper's batch (and BatchNorm its batch statistics);
    `lr_scaling` adapts the learning rate to the global batch.
    """

    dataset: str = "esc50"
    backbone: str = "DenseNet201"
    weights: str = "imagenet"
    trainable: str = "all"
    reinit_from: str | None = None
    folds: tuple = ()  # empty: every fold of the dataset
    epochs: int = 70
    batch_size: int = 32  # per replica: the global batch is batch_size x replicas
    learning_rate: float = 1e-4  # for one replica; see lr_scaling
    lr_scaling: str = "linear"  # linear, sqrt or none: see scaled_learning_rate
    weight_decay: float = 1e-3
    lr_decay_epochs: int = 30
    lr_decay_factor: float = 0.1
    dropout: float = 0.0
    precise_bn: bool = True
    augment: str = "paper"  # comma list of paper, specaugment, mixup; or none
    runs: int = 1
    deterministic: bool = False
    precision: str = "float32"  # or "mixed" (devices.resolve)
    jit_compile: str = "auto"  # "true", "false"; auto: XLA on GPUs only
    seed: int = 0
    data_dir: str | None = None
    manual_dir: str | None = None
    # audio_folder only: the user's folder and how to cut it into clips and folds.
    audio_dir: str | None = None
    sample_rate: int | None = None
    clip_seconds: float | None = None
    num_folds: int | None = None
    model_dir: str | None = None
    verbose: int = 1
    # Ray (grid.py): with an address, every model of the grid is a task of that cluster.
    ray_address: str | None = None  # "local", "auto", "HOST:6379" or "ray://HOST:10001"
    ray_gpus_per_task: int | None = None  # None: 1 if the cluster has GPUs, else 0
    ray_cpus_per_task: int = 1
    ray_retries: int = 2  # retries of a task that raised (not a NaN loss) or whose worker died

    def resolved_model_dir(self):
        dataset = self.dataset.replace(data.CATALOG_PREFIX, "").replace("/", "_")
        return self.model_dir or os.path.join("runs", f"{dataset}_{self.backbone}")


class RunError(ValueError):
    """A run option that does not fit the data (e.g. a fold it does not have)."""


class TrainingFailed(RuntimeError):
    """A model whose training cannot succeed as configured (a NaN or infinite loss)."""


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


def image_statistics(sample_rate, num_samples, dataset):
    """Per-channel mean and variance of the log-mel images of a dataset."""
    image_model = frontend.build_frontend(sample_rate, num_samples)

    @tf.function
    def moments(waveform):
        image = tf.cast(image_model(waveform, training=False), tf.float64)
        return (
            tf.cast(tf.reduce_prod(tf.shape(image)[:-1]), tf.float64),
            tf.reduce_sum(image, axis=[0, 1, 2]),
            tf.reduce_sum(tf.square(image), axis=[0, 1, 2]),
        )

    count, total, total_sq = 0.0, 0.0, 0.0
    for waveform, _ in dataset:
        n, s, sq = moments(waveform)
        count, total, total_sq = count + n.numpy(), total + s.numpy(), total_sq + sq.numpy()
    mean = total / count
    return mean, np.maximum(total_sq / count - mean**2, 1e-12)


def precise_batch_norm(model, dataset):
    """Re-estimates BatchNorm statistics as the average over a pass of `dataset`.

    Weights stay fixed; each batch runs in training mode, and every trainable
    BatchNormalization layer's moving mean and variance become the
    batch-size-weighted average of that pass's batch statistics ("precise BN").
    Moving averages with momentum 0.99-0.999 lag far behind fast-changing
    weights, which can leave a freshly trained model at chance accuracy.

    Returns the number of layers updated.
    """
    layers = [layer for layer in fused_batch_norm.batch_norm_layers(model) if layer.trainable]
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    forward = tf.function(lambda x: model(x, training=True))
    sums = [[np.zeros(layer.moving_mean.shape), np.zeros(layer.moving_variance.shape)] for layer in layers]
    seen = 0
    try:
        for layer in layers:
            layer.momentum = 0.0  # the moving statistics become the batch's own
        for waveform, _ in dataset:
            forward(waveform)
            size = int(waveform.shape[0])
            seen += size
            for (mean_sum, var_sum), layer in zip(sums, layers):
                mean_sum += size * keras.ops.convert_to_numpy(layer.moving_mean)
                var_sum += size * keras.ops.convert_to_numpy(layer.moving_variance)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    if not seen:
        raise RunError("precise BN got an empty dataset")
    for (mean_sum, var_sum), layer in zip(sums, layers):
        layer.moving_mean.assign(mean_sum / seen)
        layer.moving_variance.assign(var_sum / seen)
    return len(layers)


def add_weight_decay(model, weight_decay):
    """PyTorch-style coupled weight decay, as the reference `Adam(weight_decay=)`.

    Adds `weight_decay / 2 * ||w||^2` to the loss for every trainable variable, so
    the gradient gains `weight_decay * w` before Adam's scaling. (Keras's own
    `weight_decay` argument is decoupled, AdamW-style, a different recipe.) The
    regularisers live on the variables only, not in the saved layer configs.
    """
    if weight_decay <= 0:
        return
    for variable in model.trainable_variables:
        variable.regularizer = keras.regularizers.L2(weight_decay / 2)


def probabilities(model, dataset):
    """Softmax probabilities (float64) of a model on a `(waveform, label)` dataset.

    The model is called directly rather than through `predict`, so a model built
    under a multi-replica strategy runs on one device: `predict` would split each
    batch across the replicas, and a last, partial batch can leave a replica no
    clip, which the spectrogram's reflect padding cannot take.
    """
    forward = tf.function(lambda waveform: model(waveform, training=False),
                          reduce_retracing=True)
    logits = np.concatenate([np.asarray(forward(waveform)) for waveform, _ in dataset])
    return tf.nn.softmax(logits.astype("float64")).numpy()


def scores(probs, labels, num_classes):
    """Accuracy, loss, confusion matrix and per-class accuracy of class probabilities."""
    predicted = probs.argmax(axis=1)
    confusion = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(confusion, (labels, predicted), 1)
    support = confusion.sum(axis=1)
    per_class = np.where(support > 0, confusion.diagonal() / np.maximum(support, 1), np.nan)
    chosen = probs[np.arange(len(labels)), labels]
    return {
        "accuracy": float((predicted == labels).mean()),
        "loss": float(-np.log(np.maximum(chosen, 1e-300)).mean()),
        "num_examples": int(len(labels)),
        "confusion_matrix": confusion.tolist(),
        "per_class_accuracy": [None if np.isnan(a) else float(a) for a in per_class],
    }


def evaluate(model, dataset, num_classes):
    """`scores` of a model on a `(waveform, label)` dataset."""
    labels = np.concatenate([label.numpy() for _, label in dataset])
    return scores(probabilities(model, dataset), labels, num_classes)


def export_serving(model, path, num_samples, class_names):
    """Writes a SavedModel serving waveforms `[None, num_samples]` -> probabilities.

    Its `class_names()` endpoint returns the label names in output order.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",
        fn=lambda waveform: keras.ops.softmax(model(waveform, training=False)),
        input_signature=[tf.TensorSpec([None, num_samples], tf.float32, name="waveform")],
    )
    names = tf.constant(class_names)
    archive.add_endpoint(name="class_names", fn=lambda: names, input_signature=[])
    archive.write_out(path, verbose=False)


def _replace(temporary, final):
    """Moves a finished output into place, so readers never see half of one.

    Paths may be any `tf.io.gfile` path (local, `gs://`, ...).
    """
    if tf.io.gfile.isdir(final):
        tf.io.gfile.rmtree(final)
    tf.io.gfile.rename(temporary, final, overwrite=True)


def write_text(path, text):
    """Writes a text file atomically (temporary file, then rename)."""
    temporary = path + ".tmp"
    with tf.io.gfile.GFile(temporary, "w") as f:
        f.write(text)
    tf.io.gfile.rename(temporary, path, overwrite=True)


def write_json(path, value):
    write_text(path, json.dumps(value, indent=2) + "\n")


def read_json(path):
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


LR_SCALING = ("linear", "sqrt", "none")


def scaled_learning_rate(config, replicas):
    """The initial learning rate for `replicas` devices, each with `batch_size` clips.

    `linear` (Goyal et al. 2017, "Accurate, Large Minibatch SGD"): the global
    batch grows `replicas` times, so does the learning rate. `sqrt` grows it by
    the square root, the rule Malladi et al. (2022, "On the SDEs and Scaling
    Rules for Adaptive Gradient Algorithms") derive for Adam. `none` keeps
    `learning_rate`. On one device all three give `learning_rate`.
    """
    if config.lr_scaling not in LR_SCALING:
        raise RunError(
            f"unknown --lr_scaling={config.lr_scaling!r}; use one of {', '.join(LR_SCALING)}")
    factor = {"linear": replicas, "sqrt": replicas**0.5, "none": 1}[config.lr_scaling]
    return config.learning_rate * factor


def _learning_rate_schedule(config, replicas=1):
    initial = scaled_learning_rate(config, replicas)

    def schedule(epoch, learning_rate):
        del learning_rate
        return initial * config.lr_decay_factor ** (epoch // config.lr_decay_epochs)

    return schedule


AUGMENT_POLICIES = ("paper", "specaugment", "mixup")


def device_settings(config, found=None):
    """The dtype policy and XLA setting of a run on `found` (default: this process's devices).

    Raises:
        RunError: a --precision or --jit_compile value that is not valid, or
            --jit_compile=true with --deterministic (Keras refuses XLA under op
            determinism) or with several GPUs (see `devices`).
    """
    found = found or devices.detect()
    if config.precision not in devices.PRECISIONS:
        raise RunError(f"unknown --precision={config.precision!r}; use one of "
                       f"{', '.join(devices.PRECISIONS)}")
    if config.jit_compile not in devices.JIT_COMPILE:
        raise RunError(f"unknown --jit_compile={config.jit_compile!r}; use one of "
                       f"{', '.join(devices.JIT_COMPILE)}")
    if config.jit_compile == "true" and config.deterministic:
        raise RunError("--jit_compile=true cannot be combined with --deterministic: Keras "
                       "turns XLA off under op determinism; use --jit_compile=auto or false")
    if config.jit_compile == "true" and found.num_gpus > 1:
        raise RunError(f"--jit_compile=true fails on {found.num_gpus} GPUs: Keras 3 cannot "
                       "compile a step whose variables live on several devices "
                       "(keras-team/keras#19005); use --jit_compile=auto or false, or one GPU "
                       "(CUDA_VISIBLE_DEVICES=0)")
    return devices.resolve(config.precision, config.jit_compile, found,
                           deterministic=config.deterministic)


def augment_policies(spec):
    """The policies of an --augment value ("paper,mixup", "none")."""
    policies = tuple(p for p in spec.split(",") if p and p != "none")
    unknown = [p for p in policies if p not in AUGMENT_POLICIES]
    if unknown:
        raise RunError(
            f"unknown --augment={unknown[0]!r}; use none or a comma list of "
            f"{', '.join(AUGMENT_POLICIES)}"
        )
    return policies


def training_model(model, policies, sample_rate, seed):
    """The model `fit` trains: `model` with augmentation between frontend and backbone.

    It takes `(waveform, augment_flag)` and shares every layer, so training it
    trains `model`, which stays free of augmentation (and is what is saved). It
    has `model`'s dtype policy (compile() adds loss scaling for mixed_float16);
    the augmentation, like the frontend, is float32.
    """
    image_policies = tuple(p for p in policies if p != "mixup")
    with devices.dtype_policy(model.dtype_policy.name):
        flag = keras.Input(shape=(), name="augment_flag")
        image = model.get_layer("logmel_image").output
        x = augment.Augment(image_policies, sample_rate, seed=seed, name="augment",
                            dtype="float32")([image, flag])
        start = [layer.name for layer in model.layers].index("logmel_image") + 1
        for layer in model.layers[start:]:
            x = layer(x)
        return keras.Model([model.input, flag], x, name=f"{model.name}_training")


def compile_training_model(config, settings, num_classes, sample_rate, num_samples, *,
                           seed, mean=None, variance=None, strategy=None, learning_rate=None):
    """The model train.py trains, compiled with the recipe and the device settings.

    Returns `(model, fitted, build)`: the waveform-to-logits model that is saved,
    the model `fit` trains (with the augmentation input when `config.augment` asks
    for it; it shares `model`'s layers), and `build(**overrides)`, which builds the
    same architecture again (train_task uses it for the float32 copy of a
    mixed-precision model). BatchNorm layers run TensorFlow's fused kernel
    (`fused_batch_norm`), which changes the speed, not the results. The optimizer
    starts at `learning_rate` (default `config.learning_rate`; train_task passes
    the rate scaled for its replicas).
    """
    policies = augment_policies(config.augment)
    build = functools.partial(
        model_lib.build_model,
        config.backbone,
        num_classes,
        sample_rate,
        num_samples,
        trainable=config.trainable,
        dropout=config.dropout,
        mean=mean,
        variance=variance,
    )
    with (strategy or tf.distribute.get_strategy()).scope():
        model = build(weights=config.weights, reinit_from=config.reinit_from,
                      dtype_policy=settings.dtype_policy)
        fused_batch_norm.use_fused_kernels(model)
        add_weight_decay(model, config.weight_decay)
        fitted = training_model(model, policies, sample_rate, seed) if policies else model
        loss = (keras.losses.CategoricalCrossentropy if "mixup" in policies
                else keras.losses.SparseCategoricalCrossentropy)(from_logits=True)
        # Under mixed_float16, compile() wraps the optimizer in a LossScaleOptimizer.
        fitted.compile(
            optimizer=keras.optimizers.Adam(learning_rate or config.learning_rate), loss=loss,
            metrics=["accuracy"], jit_compile=settings.jit_compile,
        )
    return model, fitted, build


def inference_function(model, jit_compile=False):
    """A compiled function from waveforms `[batch, num_samples]` to class probabilities.

    BatchNorm layers run TensorFlow's fused inference kernel.
    """
    fused_batch_norm.use_fused_kernels(model)
    return tf.function(lambda waveform: keras.ops.softmax(model(waveform, training=False)),
                       jit_compile=jit_compile, reduce_retracing=True)


def _remove(path):
    """Deletes a file or directory tree if it exists (any `tf.io.gfile` path)."""
    if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
    elif tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)


def backup_callback(run_dir):
    """`BackupAndRestore` into `run_dir/backup`, kept after `fit` returns.

    `train_task` deletes it only once `metrics.json` is written, so a run killed
    during precise BN, evaluation or export resumes after the last epoch instead
    of training again. `double_checkpoint` keeps the previous epoch's backup too:
    a kill while the backup is being overwritten falls back to it.
    """
    return keras.callbacks.BackupAndRestore(
        os.path.join(run_dir, "backup"), double_checkpoint=True, delete_checkpoint=False)


def train_task(config, source, task, run_dir, strategy, seed, settings=None):
    """Trains one model of the protocol, evaluates it on its test part, saves it.

    Each of the strategy's replicas gets `config.batch_size` clips a step; the
    learning rate follows `config.lr_scaling` (`scaled_learning_rate`).
    `settings` (a `devices.Settings`) defaults to `device_settings(config)` on this
    process's devices. Under a mixed dtype policy the trained weights are copied
    into the same model built in float32, which is what is evaluated, saved and
    exported: saved models are float32 graphs whatever the training precision.
    """
    settings = settings or device_settings(config)
    started = datetime.datetime.now().isoformat(timespec="milliseconds")
    keras.utils.set_random_seed(seed)
    policies = augment_policies(config.augment)
    copies = any(p in policies for p in ("paper", "specaugment"))
    names = source.class_names
    replicas = strategy.num_replicas_in_sync
    batch = config.batch_size * replicas  # global: split across the replicas
    learning_rate = scaled_learning_rate(config, replicas)
    # Several replicas split each batch, and a last, partial batch can leave one of
    # them no clip, which the spectrogram's reflect padding cannot take: with
    # several, it is dropped. Batches are reshuffled every epoch, so no clip is
    # left out for good; the test accuracy always counts every clip.
    drop = replicas > 1
    train_ds = source.load(task, "train", batch, shuffle=True, seed=seed,
                           flags=bool(policies), copies=copies, drop_remainder=drop)
    valid_ds = None
    if task.valid:
        valid_ds = source.load(task, "valid", batch, flags=bool(policies), drop_remainder=drop)
    if "mixup" in policies:
        train_ds = augment.mixup(train_ds, len(names), seed=seed)
        valid_ds = valid_ds and valid_ds.map(lambda x, y: (x, tf.one_hot(y, len(names))))
    # Image statistics, precise BN and evaluation run on one device, a replica's batch at a time.
    ordered_train_ds = source.load(task, "train", config.batch_size)
    test_ds = source.load(task, "test", config.batch_size)

    mean, variance = image_statistics(source.sample_rate, source.num_samples, ordered_train_ds)
    model, fitted, build = compile_training_model(
        config, settings, len(names), source.sample_rate, source.num_samples, seed=seed,
        mean=mean, variance=variance, strategy=strategy, learning_rate=learning_rate)

    backup = backup_callback(run_dir)
    history_path = os.path.join(run_dir, "history.csv")
    if not tf.io.gfile.isdir(backup.backup_dir) and tf.io.gfile.exists(history_path):
        tf.io.gfile.remove(history_path)  # a previous attempt that saved no epoch
    # After a kill, `backup` restores the last completed epoch; the epochs that
    # follow append to history.csv. (BackupAndRestore saves before CSVLogger logs,
    # so every row of history.csv has its backup.)
    fitted.fit(
        train_ds,
        validation_data=valid_ds,
        epochs=config.epochs,
        verbose=config.verbose,
        callbacks=[
            backup,
            keras.callbacks.CSVLogger(history_path, append=True),
            keras.callbacks.TensorBoard(os.path.join(run_dir, "logs")),
            keras.callbacks.LearningRateScheduler(_learning_rate_schedule(config, replicas)),
            _StopOnNaN(raise_error=True),
        ],
    )

    jit_compile = fitted.jit_compile  # Keras turns XLA off for layers that declare no support
    if settings.dtype_policy != "float32":
        # The variables are float32 under a mixed policy, so the float32 build of the
        # same architecture takes them unchanged.
        with strategy.scope():
            trained, model = model, build(weights="none")
        model.set_weights(trained.get_weights())
        fused_batch_norm.use_fused_kernels(model)

    bn_layers = 0
    if config.precise_bn:  # frozen BatchNorm layers keep their statistics
        bn_layers = precise_batch_norm(model, ordered_train_ds)

    metrics = evaluate(model, test_ds, len(names))
    metrics.update(task=task.name, train_split=task.train, test_split=task.test,
                   valid_split=task.valid, carved_fold=task.fold, seed=seed,
                   precise_bn_layers=bn_layers, class_names=names, replicas=replicas,
                   batch_size_per_replica=config.batch_size, global_batch_size=batch,
                   learning_rate=learning_rate, lr_scaling=config.lr_scaling,
                   dtype_policy=settings.dtype_policy, jit_compile=jit_compile)

    # Each output is written under a temporary name and renamed into place, and
    # metrics.json comes last: a directory without it holds no finished model
    # (evaluate.py ignores it; a rerun trains it and overwrites the leftovers).
    temporary = os.path.join(run_dir, "model.tmp.keras")
    _remove(temporary)
    model.save(temporary)
    _replace(temporary, os.path.join(run_dir, "model.keras"))
    temporary = os.path.join(run_dir, "saved_model.tmp")
    _remove(temporary)  # a killed export's half directory
    export_serving(model, temporary, source.num_samples, names)
    _replace(temporary, os.path.join(run_dir, "saved_model"))
    # Where and when it trained: with --ray_address, which host ran the model and
    # whether models trained side by side.
    metrics.update(host=socket.gethostname(), started=started,
                   finished=datetime.datetime.now().isoformat(timespec="milliseconds"))
    write_json(os.path.join(run_dir, "metrics.json"), metrics)  # marks the run done
    _remove(backup.backup_dir)
    return metrics


def run_location(model_dir, task_name, run_number, runs):
    """(summary key, directory) of one run: `fold1/` alone, `fold1/run2/` among several."""
    if runs == 1:
        return task_name, os.path.join(model_dir, task_name)
    return f"{task_name}/run{run_number}", os.path.join(model_dir, task_name, f"run{run_number}")


def _task_number(task):
    return int(task.name[4:]) if task.name.startswith("fold") else 0


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


def summarize(task_metrics):
    """Mean and (population) standard deviation of per-task test accuracies."""
    accuracies = np.array([m["accuracy"] for m in task_metrics.values()])
    return {
        "accuracy": {name: m["accuracy"] for name, m in task_metrics.items()},
        "mean_accuracy": float(accuracies.mean()),
        "std_accuracy": float(accuracies.std()),
    }


def format_accuracy_table(summary, title):
    lines = [f"# {title}", "", "| held out | accuracy |", "|---|---|"]
    lines += [f"| {name} | {100 * a:.2f}% |" for name, a in summary["accuracy"].items()]
    failed = summary.get("failed", {})
    lines += [f"| {name} | FAILED: {' '.join(message.split())} |"
              for name, message in failed.items()]
    if summary["accuracy"]:
        over = " (finished models only)" if failed else ""
        lines.append(
            f"| mean +/- std{over} | {100 * summary['mean_accuracy']:.2f}% +/- "
            f"{100 * summary['std_accuracy']:.2f}% |"
        )
    return "\n".join(lines) + "\n"


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


@dataclasses.dataclass(frozen=True)
class Job:
    """One model of a run's grid: a task of the protocol, trained with one seed."""

    key: str  # "fold1", or "fold1/run2" among several runs
    task: data.Task
    run_dir: str
    seed: int


def plan_jobs(config, tasks, model_dir):
    """The grid of one run: every task times every run number, in order."""
    jobs = []
    for task in tasks:
        for run_number in range(1, config.runs + 1):
            key, run_dir = run_location(model_dir, task.name, run_number, config.runs)
            seed = config.seed + 1000 * (run_number - 1) + _task_number(task)
            jobs.append(Job(key, task, run_dir, seed))
    return jobs


def finished_metrics(job):
    """The job's metrics if it already finished (its `metrics.json` exists), else None."""
    path = os.path.join(job.run_dir, "metrics.json")
    return read_json(path) if tf.io.gfile.exists(path) else None


def train_job(config, source, job, strategy):
    """Trains one job, or reads its metrics if a previous attempt finished it.

    Raises:
        TrainingFailed: the loss became NaN or infinite; the job's `backup/` of its
            last completed epoch is kept for inspection.
    """
    metrics = finished_metrics(job)
    if metrics is not None:
        print(f"{job.key}: already trained, reading {job.run_dir}/metrics.json")
        _remove(os.path.join(job.run_dir, "backup"))  # if killed just after metrics.json
        return metrics
    task = job.task
    tf.io.gfile.makedirs(job.run_dir)
    print(f"{job.key}: training on {task.train}"
          + (f" (fold {task.fold} left out)" if task.fold else "")
          + (f", validating on {task.valid}" if task.valid else "")
          + f", testing on {task.test}"
          + (f" fold {task.fold}" if task.fold else "")
          + f" ({strategy.num_replicas_in_sync} replica(s) x batch {config.batch_size})")
    try:
        metrics = train_task(config, source, task, job.run_dir, strategy, job.seed)
    except TrainingFailed as error:
        backup = os.path.join(job.run_dir, "backup")
        kept = (f"the last completed epoch is kept in {backup}" if tf.io.gfile.isdir(backup)
                else "no epoch completed")
        raise TrainingFailed(
            f"{job.key}: training stopped {error}; {kept}; lower --learning_rate "
            f"or check the data, then rerun to resume") from None
    print(f"{job.key}: accuracy {100 * metrics['accuracy']:.2f}%")
    return metrics


def run_jobs(config, source, jobs):
    """Trains the jobs one after another on every local device.

    Returns `(metrics by key, error message by key)`: a job that fails does not
    stop the others.
    """
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = tf.distribute.MirroredStrategy()  # every visible GPU, else the CPU
    results, failures = {}, {}
    for job in jobs:
        try:
            results[job.key] = train_job(config, source, job, strategy)
        except TrainingFailed as error:
            print(f"{job.key}: FAILED: {error}")
            failures[job.key] = str(error)
    return results, failures


def run(config):
    """Trains one model per task of the dataset's protocol and writes the summary.

    Raises:
        RunError: after writing the summary, if any model failed.
    """
    start = time.time()
    # Options are checked before any data is prepared or any output written.
    augment_policies(config.augment)
    scaled_learning_rate(config, 1)  # checks --lr_scaling
    if config.runs < 1:
        raise RunError(f"--runs={config.runs} must be at least 1")
    if config.ray_address:
        from keras_audio_cnn import grid  # imports Ray, an optional dependency

        grid.check_options(config)
    settings = device_settings(config)
    model_lib.check_options(config.backbone, config.weights, config.trainable,
                            config.reinit_from)
    if settings.note:
        print(settings.note)
    source = data.open_source(
        config.dataset, config.data_dir, config.manual_dir, audio_dir=config.audio_dir,
        sample_rate=config.sample_rate, clip_seconds=config.clip_seconds,
        num_folds=config.num_folds,
    )
    tasks = select_tasks(source.tasks, list(config.folds), config.dataset)
    if source.skipped_files:
        print(f"{config.dataset}: {len(source.skipped_files)} undecodable file(s) left out: "
              f"{', '.join(source.skipped_files)}")

    model_dir = config.resolved_model_dir()
    tf.io.gfile.makedirs(model_dir)
    record = dataclasses.asdict(config)
    record.update(model_dir=model_dir, tasks=[t.name for t in tasks],
                  data_dir=str(source.builder.data_dir_root))
    write_json(os.path.join(model_dir, "run.json"), record)

    jobs = plan_jobs(config, tasks, model_dir)
    if config.ray_address:
        results, failures = grid.run_on_ray(config, source, jobs)
    else:
        results, failures = run_jobs(config, source, jobs)
    summary = write_summary(config, source, record, jobs, results, failures, start)
    if failures:
        first = next(iter(failures.values()))
        raise RunError(
            f"{len(failures)} of {len(jobs)} model(s) failed, first {first} "
            f"(all in {os.path.join(model_dir, 'summary.md')})")
    return summary


def write_summary(config, source, record, jobs, results, failures, start):
    """Writes `summary.json` and `summary.md`: every job is either finished or failed."""
    finished = {job.key: results[job.key] for job in jobs if job.key in results}
    missing = [job.key for job in jobs if job.key not in results and job.key not in failures]
    if missing:  # a bug, never a silent gap in the summary
        raise AssertionError(f"jobs without a result: {missing}")
    summary = summarize(finished) if finished else {
        "accuracy": {}, "mean_accuracy": None, "std_accuracy": None}
    summary.update(
        failed=failures,
        dataset=config.dataset,
        backbone=config.backbone,
        class_names=source.class_names,
        sample_rate=source.sample_rate,
        num_samples=source.num_samples,
        skipped_files=source.skipped_files,
        flags=record,
        versions=library_versions(),
        elapsed_seconds=round(time.time() - start, 1),
        finished=datetime.datetime.now().isoformat(timespec="seconds"),
    )
    model_dir = record["model_dir"]
    write_json(os.path.join(model_dir, "summary.json"), summary)
    table = format_accuracy_table(summary, f"{config.dataset}, {config.backbone}")
    lines = [table]
    if source.skipped_files:
        lines.append(f"\nUndecodable files left out: {', '.join(source.skipped_files)}\n")
    lines.append("\n## Flags\n\n")
    lines += [f"- `{k}`: `{v}`\n" for k, v in record.items()]
    lines.append("\n## Versions\n\n")
    lines += [f"- {k} {v}\n" for k, v in summary["versions"].items()]
    lines.append(f"\nElapsed: {summary['elapsed_seconds']} s\n")
    write_text(os.path.join(model_dir, "summary.md"), "".join(lines))
    print(table)
    return summary
