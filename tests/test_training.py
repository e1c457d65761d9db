"""The training recipe's parts: precise BN, coupled weight decay, step decay, backups."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_audio_cnn import model as model_lib
from keras_audio_cnn import (backup, config, data, fused_batch_norm, grid, local_runner,
                             metrics, recipe, runner, trainer)
from keras_audio_cnn.errors import ConfigError, RunError, TrainingFailed

RATE, SAMPLES, CLASSES = 8000, 8000, 10


def tone_clips(per_class, seed):
    """Noisy tones half an octave apart, one pitch per class, random phase."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(CLASSES), per_class)
    t = np.arange(SAMPLES) / RATE
    frequency = 200.0 * 2.0 ** (labels * 0.5)
    phase = rng.uniform(0, 2 * np.pi, (len(labels), 1))
    clips = 0.3 * np.sin(2 * np.pi * frequency[:, None] * t + phase)
    clips += 0.05 * rng.standard_normal(clips.shape)
    return clips.astype("float32"), labels


def batches(clips, labels, shuffle=False):
    ds = tf.data.Dataset.from_tensor_slices((clips, labels))
    if shuffle:
        ds = ds.shuffle(len(labels), seed=0)
    return ds.batch(16)


def test_precise_bn_lifts_a_short_from_scratch_run_far_above_chance():
    keras.utils.set_random_seed(0)
    train, test = tone_clips(16, seed=0), tone_clips(4, seed=1)
    mean, variance = recipe.image_statistics(RATE, SAMPLES, batches(*train))
    model = model_lib.build_model(
        "MobileNetV3Small", CLASSES, RATE, SAMPLES, weights="none", mean=mean, variance=variance
    )
    recipe.add_weight_decay(model, 1e-3)
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(batches(*train, shuffle=True), epochs=3, verbose=0, shuffle=False)  # shuffled above

    # MobileNetV3's BatchNorm momentum is 0.999: after 30 steps its moving
    # statistics are still mostly their initial values.
    before = metrics.evaluate(model, batches(*test), CLASSES)["accuracy"]
    updated = recipe.precise_batch_norm(model, batches(*train))
    after = metrics.evaluate(model, batches(*test), CLASSES)["accuracy"]
    assert updated == len(fused_batch_norm.batch_norm_layers(model)) > 10
    assert before <= 0.3, before  # chance is 0.1
    assert after >= 0.7, after


def test_precise_bn_sets_moving_statistics_to_the_average_batch_statistics():
    inputs = keras.Input((3,))
    layer = keras.layers.BatchNormalization(momentum=0.99)
    model = keras.Model(inputs, layer(inputs))
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((64, 3)) * [1.0, 2.0, 3.0] + [5.0, -1.0, 0.0]).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(64))).batch(16)
    assert recipe.precise_batch_norm(model, ds) == 1
    chunks = x.reshape(4, 16, 3)
    np.testing.assert_allclose(layer.moving_mean.numpy(), chunks.mean(axis=1).mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), chunks.var(axis=1).mean(axis=0), rtol=1e-4)
    assert layer.momentum == 0.99


class _CountsTraces(keras.layers.Layer):
    """An identity layer whose Python `call` runs only while a function is traced."""

    traces = 0

    def call(self, x):
        type(self).traces += 1
        return x


@pytest.mark.parametrize("job", ["scoring", "precise_bn"])
def test_scoring_and_precise_bn_trace_the_model_once_with_a_partial_last_batch(job):
    """Tracing DenseNet201 takes seconds: 40 clips in batches of 16 (16, 16, 8) must not
    cost a second trace for the last batch."""
    inputs = keras.Input((3,))
    outputs = keras.layers.BatchNormalization()(_CountsTraces()(inputs))
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).standard_normal((40, 3)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(40, "int64"))).batch(16)
    _CountsTraces.traces = 0
    if job == "scoring":
        assert metrics.probabilities(model, ds).shape == (40, 3)
    else:
        assert recipe.precise_batch_norm(model, ds) == 1
    assert _CountsTraces.traces == 1


def test_weight_decay_is_coupled_l2_on_every_trainable_variable():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.layers[-1].bias.assign(np.ones(3))
    recipe.add_weight_decay(model, 1e-3)
    expected = 1e-3 / 2 * sum(float(np.sum(np.square(v.numpy()))) for v in model.trainable_variables)
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)
    # Its gradient is weight_decay * w, as PyTorch's Adam(weight_decay=) adds.
    with tf.GradientTape() as tape:
        penalty = tf.add_n(model.losses)
    gradients = tape.gradient(penalty, [v.value for v in model.trainable_variables])
    for g, v in zip(gradients, model.trainable_variables):
        np.testing.assert_allclose(g.numpy(), 1e-3 * v.numpy(), rtol=1e-5)


def test_learning_rate_steps_down_tenfold_every_30_epochs():
    optim = config.TrainConfig().optim
    schedule = recipe.step_decay(optim.learning_rate, optim.lr_decay_epochs,
                                 optim.lr_decay_factor)
    assert [schedule(e, None) for e in (0, 29, 30, 59, 60, 69)] == pytest.approx(
        [1e-4, 1e-4, 1e-5, 1e-5, 1e-6, 1e-6]
    )


def test_paper_recipe_defaults():
    defaults = config.TrainConfig()
    optim = defaults.optim
    assert (optim.learning_rate, optim.weight_decay, optim.batch_size, optim.epochs) == (
        1e-4, 1e-3, 32, 70)
    assert defaults.augment == ("paper",)
    assert defaults.resolved_model_dir() == "runs/esc50_DenseNet201"


def test_folds_select_tasks_and_out_of_range_is_refused():
    tasks = [data.Task(f"fold{k}", "x", f"fold{k}") for k in range(1, 6)]
    with pytest.raises(RunError, match="fold 6 is out of range: esc50 has folds 1..5"):
        grid.select_tasks(tasks, [1, 6], "esc50")
    assert grid.select_tasks(tasks, [], "esc50") == tasks
    assert [t.name for t in grid.select_tasks(tasks, [3, 1], "esc50")] == ["fold1", "fold3"]
    fixed = [data.Task("test", "train", "test", valid="valid")]
    with pytest.raises(RunError, match="--folds does not apply"):
        grid.select_tasks(fixed, [1], "gtzan/fault_filtered")


def test_augment_and_runs_options_are_checked_before_anything_runs(tmp_path):
    assert config.TrainConfig().replace(augment="paper,mixup").augment == ("paper", "mixup")
    assert config.TrainConfig().replace(augment="none").augment == ()
    with pytest.raises(ConfigError, match="unknown --augment='pitch'"):
        config.TrainConfig().replace(augment="paper,pitch")
    with pytest.raises(ConfigError, match="--runs=0 must be a whole number of at least 1"):
        grid.run(config.TrainConfig().replace(runs=0, model_dir=str(tmp_path / "m")))
    assert not (tmp_path / "m").exists()


def test_learning_rate_scales_with_the_replicas():
    assert recipe.scaled_learning_rate(1e-4, "linear", 1) == pytest.approx(1e-4)
    assert recipe.scaled_learning_rate(1e-4, "linear", 8) == pytest.approx(8e-4)
    assert recipe.scaled_learning_rate(1e-4, "sqrt", 4) == pytest.approx(2e-4)
    assert recipe.scaled_learning_rate(1e-4, "none", 8) == pytest.approx(1e-4)
    schedule = recipe.step_decay(recipe.scaled_learning_rate(1e-4, "linear", 2), 30, 0.1)
    assert [schedule(e, None) for e in (0, 30)] == pytest.approx([2e-4, 2e-5])
    with pytest.raises(ConfigError, match="unknown --lr_scaling='square'"):
        config.TrainConfig().replace(lr_scaling="square")


def _backup_model():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    m.compile(keras.optimizers.Adam(0.1), "mse")
    return m


def _fit_with_backup(m, epochs, run_dir, history=None):
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    callbacks = [backup.Backup(str(run_dir), history, label="fold1")]
    if history:
        callbacks.append(keras.callbacks.CSVLogger(history, append=True))
    return m.fit(x, x.sum(axis=1, keepdims=True), epochs=epochs, batch_size=8, verbose=0,
                 callbacks=callbacks)


def test_the_backup_outlives_fit_and_survives_a_torn_write(tmp_path):
    trained = _backup_model()
    _fit_with_backup(trained, 3, tmp_path)
    backup_dir = tmp_path / "backup"
    assert json.loads((backup_dir / "training_metadata.json").read_text())["epoch"] == 3
    # A run killed after its last epoch (during precise BN, evaluation or export)
    # trains nothing again and continues from the same weights.
    again = _backup_model()
    assert _fit_with_backup(again, 3, tmp_path).history == {}
    for a, b in zip(trained.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    # A kill while the latest backup was being written: the previous epoch's is used.
    (backup_dir / "latest.weights.h5").write_bytes(b"torn")
    (backup_dir / "training_metadata.json").write_text('{"epoch": 3, "batch": 0}')
    assert len(_fit_with_backup(_backup_model(), 4, tmp_path).history["loss"]) == 2


def epochs_in(history):
    return [line.split(",")[0] for line in history.read_text().splitlines()]


def test_a_truncated_backup_falls_back_to_the_epoch_before_and_history_keeps_one_row_each(
        tmp_path, capsys):
    history = tmp_path / "history.csv"
    _fit_with_backup(_backup_model(), 3, tmp_path, str(history))
    assert epochs_in(history) == ["epoch", "0", "1", "2"]
    latest = tmp_path / "backup" / "latest.weights.h5"
    # A disk that filled up mid-write: the file ends early (h5py raises RuntimeError,
    # which Keras's own fall-back, for OSError only, does not catch).
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    resumed = _fit_with_backup(_backup_model(), 4, tmp_path, str(history))
    assert len(resumed.history["loss"]) == 2  # epochs 3 and 4, from epoch 2's backup
    assert "the backup of the last epoch" in capsys.readouterr().out
    assert epochs_in(history) == ["epoch", "0", "1", "2", "3"]  # epoch 2 once


def test_when_every_backup_is_damaged_the_model_trains_again_from_its_first_epoch(
        tmp_path, capsys):
    history = tmp_path / "history.csv"
    _fit_with_backup(_backup_model(), 2, tmp_path, str(history))
    for name in ("latest.weights.h5", "latest.weights.h5.bkp"):
        (tmp_path / "backup" / name).write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    fresh = _backup_model()
    again = _fit_with_backup(fresh, 2, tmp_path, str(history))
    assert len(again.history["loss"]) == 2
    assert "every backup" in capsys.readouterr().out
    assert epochs_in(history) == ["epoch", "0", "1"]
    first = _backup_model()
    _fit_with_backup(first, 2, tmp_path / "clean")
    for a, b in zip(first.get_weights(), fresh.get_weights()):  # as if never trained before
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_a_model_with_non_finite_weights_fails_as_a_nan_loss_does():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    trainer._check_finite_weights(model, 3)  # finite: fine
    model.layers[0].kernel.assign(np.full((4, 2), np.nan, "float32"))
    with pytest.raises(TrainingFailed, match="after epoch 3: 1 weight.s. are NaN or infinite"):
        trainer._check_finite_weights(model, 3)


def test_a_failed_job_is_reported_and_the_others_still_run(tmp_path, monkeypatch):
    def train_model(run_config, source, job, strategy, settings):
        if job.task.name == "fold1":
            os.makedirs(os.path.join(job.run_dir, "backup"))
            raise TrainingFailed("at epoch 2, batch 1: the loss became nan")
        return {"accuracy": 0.5}

    class Prepared:  # a data.Source in this process
        def reopened(self):
            return self

    monkeypatch.setattr(trainer, "train_model", train_model)
    run_config = config.TrainConfig().replace(model_dir=str(tmp_path))
    tasks = [data.Task(f"fold{k}", "x", f"fold{k}") for k in (1, 2)]
    jobs = grid.plan_jobs(tasks, str(tmp_path))
    train = runner.JobTrainer(run_config, Prepared())
    results, failures = local_runner.LocalRunner().run(jobs, train)
    assert results == {"fold2": {"accuracy": 0.5}}
    assert list(failures) == ["fold1"]
    assert failures["fold1"] == (
        f"fold1: training stopped at epoch 2, batch 1: the loss became nan; the last "
        f"completed epoch is kept in {tmp_path / 'fold1' / 'backup'}; lower --learning_rate "
        "or check the data, then rerun to resume")
