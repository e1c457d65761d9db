"""Preemption, NaN losses, half-written outputs and several replicas, as a user meets them.

One `train.py` command is SIGKILLed in the middle of an epoch of its second fold
and run again; its first fold also serves as the single-device half of the
two-replica comparison, so the module trains as few models as it can.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from keras_audio_cnn import evaluation, rundir

# Training only the classifier of a frozen VGG16 from random weights, without
# augmentation, compiles several times faster than the tiny model of the other
# tests, and VGG16 has no BatchNorm layer (see the last test). A randomly
# initialised MobileNet would do no better: frozen, its BatchNorm layers keep
# their initial statistics and its features vanish, the same for every clip.
FROZEN_VGG16 = ["--backbone=VGG16", "--weights=none", "--trainable=head",
                "--learning_rate=1e-2", "--batch_size=4", "--augment=none", "--deterministic",
                "--verbose=2"]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def sounds(make_sounds):
    # 4 classes x 8 clips in 2 folds of 16: a fold trains on exactly 4 batches of 4.
    return make_sounds(classes=("bird", "cat", "dog", "cow"), files_per_class=8, num_folds=2)


@pytest.fixture(scope="module")
def train_flags(folder_flags):
    """`train_flags(sounds, name, *flags)`: the frozen VGG16 on 2 folds of `sounds`, into
    `sounds/name`."""

    def flags_of(sounds, name, *flags):
        return [*FROZEN_VGG16, *folder_flags(sounds, num_folds=2), f"--model_dir={sounds / name}",
                *flags]

    return flags_of


def epochs_logged(history):
    """The epoch column of the complete rows of a history.csv (none if missing)."""
    if not history.exists():
        return []
    lines = history.read_text().split("\n")[1:-1]  # the last piece is unfinished or empty
    return [int(line.split(",")[0]) for line in lines]


def files_under(directory):
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


@pytest.fixture(scope="module")
def killed(sounds, train_flags):
    """A 2-fold, 3-epoch run SIGKILLed while its second fold trains its second epoch.

    Leftovers of a killed export are then planted in that fold: the temporaries
    `train_task` writes before renaming, and an unreadable `model.keras` (as if the
    kill had come between renaming it and writing metrics.json).
    """
    flags = train_flags(sounds, "killed", "--epochs=3")
    model_dir = sounds / "killed"
    history = model_dir / "fold2" / "history.csv"
    log = sounds / "killed.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *flags],
                                   stdout=out, stderr=subprocess.STDOUT, env=ENV, cwd=ROOT)
        deadline = time.monotonic() + 600
        try:
            # BackupAndRestore saves each epoch before CSVLogger writes its row, so
            # once fold2's first row is there, its backup is complete and its second
            # epoch (four training steps) is starting.
            while not epochs_logged(history):
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "fold2 never finished an epoch"
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            process.wait()
    fold1, fold2 = model_dir / "fold1", model_dir / "fold2"
    state = dict(
        flags=flags, model_dir=model_dir, returncode=process.returncode,
        fold2_epochs=epochs_logged(history), fold2_files=files_under(fold2),
        fold1_bytes={name: (fold1 / name).read_bytes() for name in ("model.keras", "metrics.json")},
        fold1_mtimes={name: (fold1 / name).stat().st_mtime_ns
                      for name in ("model.keras", "metrics.json")},
    )
    (fold2 / "model.tmp.keras").write_bytes(b"half a zip")
    (fold2 / "saved_model.tmp").mkdir()
    (fold2 / "saved_model.tmp" / "saved_model.pb").write_bytes(b"half a protobuf")
    (fold2 / "saved_model.tmp" / "stray.txt").write_text("from the killed export")
    (fold2 / "model.keras").write_bytes(b"not a model")
    # A copy to look at the killed state while the original is resumed.
    shutil.copytree(model_dir, sounds / "killed_copy")
    state["copy"] = sounds / "killed_copy"
    return state


@pytest.fixture(scope="module")
def resumed(killed, run_cli):
    """The same command run again on the killed run."""
    result = run_cli("train.py", *killed["flags"])
    return dict(killed, stdout=result.stdout)


def test_the_kill_landed_mid_epoch_after_a_backup(killed):
    assert killed["returncode"] == -signal.SIGKILL
    assert killed["fold2_epochs"] == [0]  # killed during epoch 2: one complete row
    files = killed["fold2_files"]
    assert "metrics.json" not in files and "model.keras" not in files
    assert {"backup/latest.weights.h5", "backup/training_metadata.json"} <= set(files)


def test_unfinished_models_are_never_loaded(killed, tmp_path, read_json):
    copy = killed["copy"]
    fold2 = str(copy / "fold2")
    assert rundir.finished_models(str(copy), "fold2") == []
    assert rundir.unfinished_models(str(copy), "fold2") == [fold2]
    # fold2's unreadable model.keras would raise if it were loaded.
    summary = evaluation.evaluate_runs([str(copy)], output_dir=str(tmp_path / "out"))
    assert summary["accuracy"] == {"fold1": read_json(copy, "fold1", "metrics.json")["accuracy"]}
    assert summary["unfinished"] == [fold2]

    # With no finished model at all, evaluation is refused in one line.
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(copy / "run.json", alone)
    shutil.copytree(copy / "fold2", alone / "fold2")
    with pytest.raises(evaluation.EvaluationError) as error:
        evaluation.evaluate_runs([str(alone)], output_dir=str(tmp_path / "out2"))
    message = str(error.value)
    assert "no finished model yet" in message and "rerun the train.py command" in message
    assert "\n" not in message
    assert not (tmp_path / "out2").exists()


def test_the_rerun_skips_the_finished_fold_and_resumes_the_killed_one(resumed):
    stdout = resumed["stdout"]
    assert "fold1: already trained" in stdout
    fold1 = resumed["model_dir"] / "fold1"
    for name, data in resumed["fold1_bytes"].items():
        assert (fold1 / name).read_bytes() == data, name
        assert (fold1 / name).stat().st_mtime_ns == resumed["fold1_mtimes"][name], name
    # BackupAndRestore restored epoch 1 and trained epochs 2 and 3 only.
    assert "Epoch 1/3" not in stdout and "Epoch 2/3" in stdout and "Epoch 3/3" in stdout
    assert epochs_logged(resumed["model_dir"] / "fold2" / "history.csv") == [0, 1, 2]


def test_the_resumed_run_is_complete_and_consistent(resumed, read_json):
    model_dir = resumed["model_dir"]
    summary = read_json(model_dir, "summary.json")
    assert summary["failed"] == {}
    for fold in ("fold1", "fold2"):
        run_dir = model_dir / fold
        metrics = read_json(run_dir, "metrics.json")
        assert summary["accuracy"][fold] == metrics["accuracy"]
        assert metrics["num_examples"] == 16 and metrics["replicas"] == 1
        assert (run_dir / "saved_model" / "saved_model.pb").is_file()
        assert not (run_dir / "backup").exists()  # removed once metrics.json was written
    # The planted leftovers were replaced, not mixed into the new outputs.
    assert not [p for p in files_under(model_dir) if ".tmp" in p]
    assert not (model_dir / "fold2" / "saved_model" / "stray.txt").exists()
    served = tf.saved_model.load(str(model_dir / "fold2" / "saved_model"))
    assert [n.decode() for n in served.class_names().numpy()] == summary["class_names"]

    evaluated = evaluation.evaluate_runs([str(model_dir)])  # what evaluate.py runs
    assert evaluated["accuracy"] == summary["accuracy"] and evaluated["unfinished"] == []
    for fold in ("fold1", "fold2"):
        assert evaluated["tasks"][fold]["confusion_matrix"] == read_json(
            model_dir, fold, "metrics.json")["confusion_matrix"]


def test_a_nan_loss_fails_the_fold_in_one_line_and_keeps_its_backup(
        sounds, train_flags, run_cli, read_json, assert_one_line_error):
    # Epoch 1 trains at 1e-4; from epoch 2 the step decay multiplies the learning
    # rate by 1e30, so one Adam step moves weights by ~1e26 and their L2 penalty
    # (w^2 ~ 1e52) overflows float32: the loss is inf or nan whatever the data.
    model_dir = sounds / "nan"
    result = run_cli("train.py", *train_flags(sounds, "nan", "--folds=1", "--epochs=2",
                                              "--lr_decay_epochs=1", "--lr_decay_factor=1e30"),
                     check=False)
    assert result.returncode == 1
    assert_one_line_error(result, "train.py", "1 of 1 model(s) failed", "fold1",
                          "at epoch 2", f"kept in {model_dir / 'fold1' / 'backup'}",
                          "lower --learning_rate", "rerun to resume",
                          str(model_dir / "summary.md"))
    assert "fold1: FAILED" in result.stdout

    fold1 = model_dir / "fold1"
    backup = json.loads((fold1 / "backup" / "training_metadata.json").read_text())
    assert backup["epoch"] == 1  # the completed first epoch
    assert (fold1 / "backup" / "latest.weights.h5").stat().st_size > 0
    assert epochs_logged(fold1 / "history.csv") == [0]
    assert not [p for p in ("metrics.json", "model.keras", "model.tmp.keras", "saved_model",
                            "saved_model.tmp") if (fold1 / p).exists()]
    summary = read_json(model_dir, "summary.json")
    assert summary["accuracy"] == {} and list(summary["failed"]) == ["fold1"]
    assert "at epoch 2" in summary["failed"]["fold1"]
    assert "| fold1 | FAILED: fold1: training stopped at epoch 2" in (
        model_dir / "summary.md").read_text()


TWO_REPLICAS = """
    import json, sys
    import keras
    import numpy as np
    import tensorflow as tf

    # Two logical CPUs, set before TensorFlow initialises its devices.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    tf.config.experimental.enable_op_determinism()  # as train.py --deterministic
    from keras_audio_cnn import config, datasets, grid, recipe, trainer

    model_dir, out_dir = sys.argv[1], sys.argv[2]
    with open(model_dir + "/run.json") as f:
        run = json.load(f)
    with open(model_dir + "/fold1/metrics.json") as f:
        seed = json.load(f)["seed"]
    # The same global batch and learning rate as train.py's single replica: half
    # the clips on each replica, half the learning rate, doubled by the linear rule.
    run_config = config.TrainConfig.from_flags(
        dict(run, batch_size=run["batch_size"] // 2, learning_rate=run["learning_rate"] / 2))
    options = run_config.data
    source = datasets.open_source(options.dataset, options.data_dir, options.manual_dir,
                                  audio_dir=options.audio_dir, sample_rate=options.sample_rate,
                                  clip_seconds=options.clip_seconds, num_folds=options.num_folds)
    task = next(t for t in source.tasks if t.name == "fold1")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    trainer.train_model(run_config, source, grid.Job("fold1", task, out_dir, seed), strategy)

    # Precise BN of a model built under the strategy sets both replicas' statistics
    # (it runs outside the replicas, on batches of one device).
    with strategy.scope():
        inputs = keras.Input((3,))
        layer = keras.layers.BatchNormalization()
        bn_model = keras.Model(inputs, layer(inputs))
    x = np.random.default_rng(0).normal([5.0, -1.0, 0.0], [1.0, 2.0, 3.0], (64, 3))
    x = x.astype("float32")
    batches = tf.data.Dataset.from_tensor_slices((x, x)).batch(16)
    assert recipe.precise_batch_norm(bn_model, batches) == 1
    means = strategy.experimental_local_results(layer.moving_mean.value)
    assert len(means) == 2
    for mean in means:
        np.testing.assert_allclose(mean.numpy(), x.reshape(4, 16, 3).mean(axis=1).mean(axis=0),
                                   rtol=1e-5)
"""


def test_two_replicas_train_the_same_job_as_one(resumed, tmp_path, read_json):
    """fold1 of the resumed run, trained by train.py on one device (MirroredStrategy over
    the CPU) with batches of 4, against the same job on two logical CPUs with 2 clips each.

    With trainable BatchNorm layers the two would differ: each replica normalises
    with the statistics of its own 2 clips instead of all 4, which changes every
    forward pass and gradient. The frozen VGG16 has none, so what is left is the
    distribution arithmetic (splitting the batch, scaling the loss and summing the
    gradients across replicas, the learning-rate rule), which must agree to float
    rounding: the same seed and data give the same batches and initial weights.
    """
    one_dir = resumed["model_dir"] / "fold1"
    two_dir = tmp_path / "two"
    subprocess.run([sys.executable, "-c", textwrap.dedent(TWO_REPLICAS),
                    str(resumed["model_dir"]), str(two_dir)],
                   check=True, cwd=ROOT, env=ENV, timeout=600)
    one, two = read_json(one_dir, "metrics.json"), read_json(two_dir, "metrics.json")
    assert (one["replicas"], two["replicas"]) == (1, 2)
    assert (one["batch_size_per_replica"], two["batch_size_per_replica"]) == (4, 2)
    assert one["global_batch_size"] == two["global_batch_size"] == 4
    assert one["learning_rate"] == two["learning_rate"] == pytest.approx(1e-2)
    assert set(one) == set(two)
    assert np.array(one["confusion_matrix"]).shape == np.array(two["confusion_matrix"]).shape

    served = [tf.saved_model.load(str(d / "saved_model")) for d in (one_dir, two_dir)]
    signatures = [{name: (str(f.structured_input_signature), str(f.structured_outputs))
                   for name, f in s.signatures.items()} for s in served]
    assert signatures[0] == signatures[1] and "serve" in signatures[0]
    clips = np.random.default_rng(0).uniform(-0.5, 0.5, (3, 4000)).astype("float32")
    outputs = [s.serve(tf.constant(clips)).numpy() for s in served]
    assert outputs[0].shape == outputs[1].shape == (3, 4)

    # 12 Adam steps on both; summing two half-batch gradients instead of one
    # full-batch gradient only reorders float additions (relative error ~1e-7,
    # grown a little by the steps). A loss or gradient off by the replica count,
    # or a learning rate not scaled, would differ at the first step by far more.
    losses = [np.genfromtxt(d / "history.csv", delimiter=",", names=True)["loss"]
              for d in (one_dir, two_dir)]
    assert len(losses[0]) == len(losses[1]) == 3
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
    np.testing.assert_allclose(outputs[1], outputs[0], atol=1e-4)
    assert two["accuracy"] == one["accuracy"]


def test_a_rerun_with_options_that_change_the_models_is_refused_in_one_line(
        resumed, tmp_path, run_cli, read_json, assert_one_line_error):
    model_dir = tmp_path / "run"
    shutil.copytree(resumed["model_dir"], model_dir)
    flags = [f for f in resumed["flags"] if not f.startswith("--model_dir")]
    flags.append(f"--model_dir={model_dir}")
    before = (model_dir / "run.json").read_text()
    result = run_cli("train.py", *flags, "--epochs=5", "--backbone=VGG19", check=False)
    assert_one_line_error(result, "train.py", f"{model_dir} holds a run trained with other options",
                          "--backbone=VGG19 (recorded: VGG16)", "--epochs=5 (recorded: 3)",
                          "--overwrite")
    assert (model_dir / "run.json").read_text() == before
    assert "Downloading and preparing" not in result.stdout  # refused before any data work

    # Options that cannot change a finished model may differ: the run is resumed as is.
    result = run_cli("train.py", *flags, "--verbose=0")
    assert "fold1: already trained" in result.stdout and "fold2: already trained" in result.stdout
    assert read_json(model_dir, "run.json")["verbose"] == 0
    assert read_json(model_dir, "summary.json")["flags"]["epochs"] == 3


def test_overwrite_starts_afresh_and_a_rerun_adds_folds(
        resumed, tmp_path, run_cli, read_json):
    model_dir = tmp_path / "run"
    shutil.copytree(resumed["model_dir"], model_dir)
    (model_dir / "evaluation.json").write_text("{}")
    flags = [f for f in resumed["flags"] if not f.startswith(("--model_dir", "--epochs"))]
    flags.append(f"--model_dir={model_dir}")
    result = run_cli("train.py", *flags, "--epochs=1", "--folds=1", "--overwrite")
    assert "--overwrite: removing the earlier run" in result.stdout
    assert "already trained" not in result.stdout
    assert sorted(os.listdir(model_dir)) == ["fold1", "run.json", "summary.json", "summary.md"]
    assert read_json(model_dir, "run.json")["epochs"] == 1
    assert epochs_logged(model_dir / "fold1" / "history.csv") == [0]
    # The same options with another fold: fold 1 is kept, fold 2 joins the run.
    flags.append("--epochs=1")
    result = run_cli("train.py", *flags, "--folds=2")
    assert "fold1: already trained" in result.stdout
    summary = read_json(model_dir, "summary.json")
    assert set(summary["accuracy"]) == {"fold1", "fold2"}
    assert read_json(model_dir, "run.json")["tasks"] == ["fold1", "fold2"]


def test_a_second_train_py_on_the_same_model_dir_exits_naming_the_first(
        sounds, train_flags, run_cli, assert_one_line_error):
    flags = train_flags(sounds, "locked", "--folds=1", "--epochs=2")
    lock = sounds / "locked" / ".lock"
    first = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *flags],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV, cwd=ROOT,
                             text=True)
    try:
        deadline = time.monotonic() + 600
        while not lock.exists():
            assert first.poll() is None, first.stdout.read()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = run_cli("train.py", *flags, check=False)
        output = first.communicate(timeout=900)[0]
    finally:
        first.kill()
    assert first.returncode == 0, output[-3000:]
    assert_one_line_error(second, "train.py", f"{sounds / 'locked'} is being written by process "
                          f"{first.pid}", "use another --model_dir")
    history = (sounds / "locked" / "fold1" / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history] == ["epoch", "0", "1"]
    assert not lock.exists()


def test_a_damaged_model_keras_is_named_with_how_to_retrain_it(
        resumed, tmp_path, run_cli, assert_one_line_error):
    model_dir = tmp_path / "run"
    shutil.copytree(resumed["model_dir"], model_dir)
    model = model_dir / "fold1" / "model.keras"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    result = run_cli("evaluate.py", f"--model_dir={model_dir}",
                     f"--output_dir={tmp_path / 'out'}", check=False)
    assert_one_line_error(result, "evaluate.py", f"{model} is damaged",
                          f"delete {model_dir / 'fold1'} and rerun the train.py command")
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs (needs the right to mount; the logic is also tested without it in
    tests/test_bad_input.py with a faked disk_usage)."""
    mount_point = tmp_path / "small_disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_during_the_epoch_backup_is_one_line_and_leaves_no_torn_file(
        sounds, train_flags, small_disk, run_cli, assert_one_line_error):
    model_dir = small_disk / "run"
    flags = [f for f in train_flags(sounds, "unused", "--folds=1", "--epochs=2")
             if not f.startswith("--model_dir")]
    result = run_cli("train.py", *flags, f"--model_dir={model_dir}", check=False)
    assert_one_line_error(result, "train.py", "no space left for fold1's epoch backup in "
                          f"{model_dir / 'fold1' / 'backup'}", "MB are free",
                          "rerun the same command to resume")
    assert result.returncode == 1  # not a crash (a segfault is -11)
    backup_dir = model_dir / "fold1" / "backup"
    assert not backup_dir.exists() or os.listdir(backup_dir) == []
    assert not (model_dir / ".lock").exists()
