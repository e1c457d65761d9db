"""Ordinary mistakes with train.py and evaluate.py: one line each, nothing written."""

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("flag, message", [
    ("--epochs=0", "flag --epochs=0: must be a whole number of at least 1"),
    ("--epochs=-1", "flag --epochs=-1: must be a whole number of at least 1"),
    ("--batch_size=0", "flag --batch_size=0: must be a whole number of at least 1"),
    ("--lr_decay_epochs=0", "flag --lr_decay_epochs=0: must be a whole number of at least 1"),
    ("--learning_rate=nan", "flag --learning_rate=nan: must be a finite number above 0"),
    ("--learning_rate=-1", "flag --learning_rate=-1.0: must be a finite number above 0"),
    ("--weight_decay=inf", "flag --weight_decay=inf: must be a finite number at least 0"),
    ("--dropout=1.5", "flag --dropout=1.5: must be a finite number at least 0 and below 1"),
    ("--folds=0", "flag --folds=[0]: must be a whole number of at least 1"),
    ("--runs=0", "flag --runs=0: must be a whole number of at least 1"),
    ("--clip_seconds=-2", "flag --clip_seconds=-2.0: must be a finite number above 0"),
    ("--num_folds=1", "flag --num_folds=1: must be a whole number of at least 2"),
    ("--precision=half", "flag --precision=half: value should be one of <float32|mixed>"),
    ("--epochs=ten", "flag --epochs=ten"),
])
def test_a_flag_out_of_range_is_one_line_before_anything_runs(
        flag, message, tmp_path, run_cli, assert_one_line_error):
    result = run_cli("train.py", flag, f"--model_dir={tmp_path / 'm'}",
                     f"--data_dir={tmp_path / 'd'}", check=False)
    assert_one_line_error(result, "train.py", message)
    assert os.listdir(tmp_path) == []


def test_weights_that_are_not_a_weights_file_are_refused_before_any_data_work(
        tmp_path, run_cli, assert_one_line_error):
    text = tmp_path / "notes.weights.h5"
    text.write_text("not HDF5")
    for weights, fragment in [(tmp_path, "is a directory"), (text, "is not a Keras weights file")]:
        result = run_cli("train.py", f"--weights={weights}", "--backbone=MobileNetV3Small",
                         f"--model_dir={tmp_path / 'm'}", f"--data_dir={tmp_path / 'd'}",
                         check=False)
        assert_one_line_error(result, "train.py", f"--weights={weights} {fragment}")
    assert sorted(os.listdir(tmp_path)) == ["notes.weights.h5"]


def test_weights_of_another_architecture_are_one_line(tmp_path):
    from keras_audio_cnn.backbones import imagenet
    from keras_audio_cnn.errors import ModelConfigError

    import keras

    path = str(tmp_path / "vgg.weights.h5")
    keras.applications.VGG16(include_top=False, weights=None,
                             input_shape=(32, 32, 3)).save_weights(path)
    with pytest.raises(ModelConfigError, match="does not fit MobileNetV3Small without its top"):
        imagenet.build_backbone("MobileNetV3Small", (128, 128, 3), weights=path)
    assert h5py.is_hdf5(path)
    os.remove(path)


@pytest.mark.parametrize("make, fragment", [
    (lambda tmp: (tmp / "file").write_text("x") and tmp / "file", "is a file; pass a directory"),
    (lambda tmp: (tmp / "file").write_text("x") and tmp / "file" / "sub",
     "lies under {tmp}/file, which is a file"),
    (lambda tmp: "/proc/self/not_creatable", "cannot create --{flag}=/proc/self/not_creatable"),
])
@pytest.mark.parametrize("flag", ["model_dir", "data_dir"])
def test_an_unusable_output_directory_is_refused_before_any_data_work(
        make, fragment, flag, tmp_path, run_cli, assert_one_line_error):
    path = make(tmp_path)
    other = "data_dir" if flag == "model_dir" else "model_dir"
    result = run_cli("train.py", "--backbone=MobileNetV3Small", "--weights=none",
                     f"--{flag}={path}", f"--{other}={tmp_path / 'other'}", check=False)
    assert_one_line_error(result, "train.py", fragment.format(tmp=tmp_path, flag=flag))
    assert not (tmp_path / "other").exists()


def test_evaluate_output_dir_that_is_a_file_is_refused_before_evaluating(
        tmp_path, run_cli, assert_one_line_error):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")
    (tmp_path / "out").write_text("x")
    result = run_cli("evaluate.py", f"--model_dir={tmp_path / 'run'}",
                     f"--output_dir={tmp_path / 'out'}", check=False)
    assert_one_line_error(result, "evaluate.py", f"--output_dir={tmp_path / 'out'} is a file")
    assert (tmp_path / "out").read_text() == "x"


def test_a_full_disk_is_one_line_naming_the_backup_and_the_space_needed(tmp_path, monkeypatch):
    import keras

    from keras_audio_cnn import backup

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    usage = backup.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(backup.shutil, "disk_usage",
                        lambda path: usage._replace(free=1 * 2**20))
    x = np.zeros((8, 4), "float32")
    with pytest.raises(backup.DiskFullError) as error:
        model.fit(x, x[:, :1], epochs=1, verbose=0,
                  callbacks=[backup.Backup(str(tmp_path), label="fold1")])
    message = str(error.value)
    assert message.startswith(f"no space left for fold1's epoch backup in {tmp_path}/backup")
    assert "needs about 16 MB and 1 MB are free" in message and "\n" not in message
    assert os.listdir(tmp_path / "backup") == []  # nothing half-written


@pytest.mark.parametrize("dataset, folds, fragment", [
    ("esc50", "9", "fold 9 is out of range: esc50 has folds 1..5"),
    ("urbansound8k", "1,11", "fold 11 is out of range: urbansound8k has folds 1..10"),
    ("gtzan/fault_filtered", "1", "--folds does not apply to gtzan/fault_filtered"),
    ("audio_folder", "6", "fold 6 is out of range: audio_folder has folds 1..5"),
])
def test_folds_a_dataset_lacks_are_refused_before_any_download_or_preparation(
        dataset, folds, fragment, tmp_path, run_cli, assert_one_line_error):
    result = run_cli("train.py", f"--dataset={dataset}", f"--folds={folds}",
                     f"--audio_dir={tmp_path}", "--backbone=MobileNetV3Small", "--weights=none",
                     f"--data_dir={tmp_path / 'd'}", f"--model_dir={tmp_path / 'm'}", check=False)
    assert_one_line_error(result, "train.py", fragment)
    assert not (tmp_path / "d").exists() and not (tmp_path / "m").exists()
    assert "Downloading" not in result.stdout + result.stderr


@pytest.mark.parametrize("dataset, rate, fragment", [
    ("esc50", 22050, "dataset 'esc50' has no config at 22050 Hz, the rate the model needs; it "
     "is offered at 16000, 32000 or 44100 Hz"),
    ("urbansound8k/44100hz", 32000, "use urbansound8k/32000hz, or leave the rate out of the "
     "name (urbansound8k)"),
])
def test_a_rate_a_dataset_lacks_is_refused_before_any_download_or_preparation(
        dataset, rate, fragment, tmp_path, run_cli, assert_one_line_error):
    result = run_cli("train.py", f"--dataset={dataset}", f"--sample_rate={rate}",
                     "--backbone=MobileNetV3Small", "--weights=none",
                     f"--data_dir={tmp_path / 'd'}", f"--model_dir={tmp_path / 'm'}", check=False)
    assert_one_line_error(result, "train.py", fragment)
    assert os.listdir(tmp_path) == []
    assert "Downloading" not in result.stdout + result.stderr


def test_no_space_left_anywhere_is_one_line_naming_the_file():
    import errno

    from keras_audio_cnn import cli

    def write():
        raise OSError(errno.ENOSPC, "No space left on device", "/data/tfds/esc50/x.tfrecord")

    with pytest.raises(SystemExit) as exit_:
        cli.run_or_exit("train.py", write)
    assert str(exit_.value) == (
        "train.py: error: no space left on the device writing /data/tfds/esc50/x.tfrecord; free "
        "some space, then rerun the same command (a train.py run resumes where it stopped)")

    def other():
        raise OSError(errno.EACCES, "Permission denied")

    with pytest.raises(PermissionError):  # not a full disk: not ours to fold into a line
        cli.run_or_exit("train.py", other)


def test_output_to_a_closed_pipe_ends_every_cli_quietly():
    """`evaluate.py ... | head -1`: what is left in stdout's buffer is written when the
    command ends; with the reader gone that write fails, and the CLIs (all through
    `cli.run_or_exit`) stop with status 1 and no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    script = ("from keras_audio_cnn import cli\n"
              "cli.run_or_exit('evaluate.py', print, 'a table that nobody reads')\n"
              "print('not reached')\n")
    result = subprocess.run([sys.executable, "-c", script], stdout=write_end,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120)
    os.close(write_end)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
