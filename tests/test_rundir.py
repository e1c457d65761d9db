"""The run directory's rules (docs/run_directory.md) on hand-made directories."""

import json
import os

import pytest

from keras_audio_cnn import rundir


def make(root, *paths):
    """Creates the files (ending in a name with a dot) and folders under root."""
    for path in paths:
        full = root / path
        if "." in full.name:
            full.parent.mkdir(parents=True, exist_ok=True)
            full.write_text("{}")
        else:
            full.mkdir(parents=True, exist_ok=True)


def test_a_model_is_finished_exactly_when_its_metrics_json_exists(tmp_path):
    make(tmp_path, "fold1/metrics.json", "fold1/model.keras",
         "fold2/model.keras", "fold2/backup/latest.weights.h5", "fold2/saved_model.tmp")
    assert rundir.finished_models(str(tmp_path), "fold1") == [str(tmp_path / "fold1")]
    assert rundir.unfinished_models(str(tmp_path), "fold1") == []
    assert rundir.finished_models(str(tmp_path), "fold2") == []
    assert rundir.unfinished_models(str(tmp_path), "fold2") == [str(tmp_path / "fold2")]
    assert rundir.model_directories(str(tmp_path), "fold3") == []  # never started


def test_runs_of_a_task_are_listed_in_numeric_order(tmp_path):
    make(tmp_path, "fold1/run10/metrics.json", "fold1/run2/metrics.json", "fold1/run1",
         "fold1/notes", "fold1/runaway/metrics.json")
    task = str(tmp_path / "fold1")
    assert rundir.model_directories(str(tmp_path), "fold1") == [
        os.path.join(task, "run1"), os.path.join(task, "run2"), os.path.join(task, "run10")]
    assert rundir.finished_models(str(tmp_path), "fold1") == [
        os.path.join(task, "run2"), os.path.join(task, "run10")]
    # A task directory with a metrics.json of its own is one model, whatever it holds.
    make(tmp_path, "fold1/metrics.json")
    assert rundir.finished_models(str(tmp_path), "fold1") == [task]


@pytest.mark.parametrize("runs, expected", [
    (1, [("fold3", "fold3")]),
    (2, [("fold3/run1", "fold3/run1"), ("fold3/run2", "fold3/run2")]),
])
def test_job_locations(tmp_path, runs, expected):
    found = [rundir.job_location(str(tmp_path), "fold3", r, runs) for r in range(1, runs + 1)]
    assert found == [(key, str(tmp_path / path)) for key, path in expected]


def test_publish_replaces_an_output_whole_and_leaves_no_temporary(tmp_path):
    make(tmp_path, "saved_model/stale.txt", "saved_model.tmp/half.pb")

    def write(path):
        os.makedirs(path)
        with open(os.path.join(path, "saved_model.pb"), "w") as f:
            f.write("new")

    rundir.publish(str(tmp_path), rundir.SAVED_MODEL, write)
    assert sorted(os.listdir(tmp_path)) == ["saved_model"]
    assert os.listdir(tmp_path / "saved_model") == ["saved_model.pb"]

    rundir.publish(str(tmp_path), rundir.MODEL_KERAS,
                   lambda path: open(path, "w").write("model"))
    assert (tmp_path / "model.keras").read_text() == "model"
    assert not (tmp_path / "model.tmp.keras").exists()


def test_read_run_names_what_is_missing(tmp_path):
    with pytest.raises(rundir.RunDirError, match="does not exist"):
        rundir.read_run(str(tmp_path / "nothing"))
    with pytest.raises(rundir.RunDirError, match=r"no train.py run \(no run.json\)"):
        rundir.read_run(str(tmp_path))
    (tmp_path / "run.json").write_text(json.dumps({"dataset": "esc50"}))
    assert rundir.read_run(str(tmp_path)) == {"dataset": "esc50"}


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_ones_lock_is_taken_over(
        tmp_path, capsys):
    import socket
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".lock").write_text(json.dumps(
            {"host": socket.gethostname(), "pid": holder.pid, "started": "2026-11-30T10:00:00"}))
        with pytest.raises(rundir.RunDirError) as error:
            with rundir.RunLock(str(tmp_path)):
                pass
        assert str(error.value) == (
            f"{tmp_path} is being written by process {holder.pid} on {socket.gethostname()} "
            f"(since 2026-11-30T10:00:00); wait for it to finish or use another --model_dir "
            f"(if that process is gone, delete {tmp_path / '.lock'})")
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone: its lock is stale, taken over, and released on leaving.
    with rundir.RunLock(str(tmp_path)) as lock:
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
        assert lock.path == str(tmp_path / ".lock")
    assert f"taking over the lock of process {holder.pid}" in capsys.readouterr().out
    assert not (tmp_path / ".lock").exists()


def test_a_lock_of_another_host_is_never_taken_over(tmp_path):
    (tmp_path / ".lock").write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": "x"}))
    with pytest.raises(rundir.RunDirError, match="by process 1 on elsewhere"):
        rundir.RunLock(str(tmp_path)).check()
    assert (tmp_path / ".lock").exists()


def _hand_made_run(root, model_file):
    """A run whose one finished model (fold1) is `model_file`; returns (model_dir, fold1)."""
    fold1 = root / "run" / "fold1"
    fold1.mkdir(parents=True)
    (root / "run" / "run.json").write_text(json.dumps({"tasks": ["fold1"]}))
    (fold1 / "metrics.json").write_text(json.dumps(
        {"class_names": ["a", "b"], "sample_rate": 8000, "num_samples": 4}))
    (fold1 / "model.keras").write_bytes(model_file)
    return root / "run", fold1


def _retrain(model_dir, run_dir):
    return (f"retrain that model: delete {run_dir} and rerun the train.py command of "
            f"{model_dir} (its flags are in {model_dir / 'run.json'})")


def test_a_model_file_holding_python_code_is_refused_as_such_and_nothing_of_it_runs(tmp_path):
    import keras

    from keras_audio_cnn import ensemble, evaluation
    from keras_audio_cnn.errors import EvaluationError, PredictionError

    ran = tmp_path / "the_lambda_ran"
    code = eval(f"lambda x: (open({str(ran)!r}, 'w').close(), x)[1]")  # noqa: S307
    keras.Sequential([keras.Input((4,)), keras.layers.Lambda(code), keras.layers.Dense(2)]).save(
        tmp_path / "lambda.keras")
    ran.unlink()  # building the model called it
    model_dir, fold1 = _hand_made_run(tmp_path, (tmp_path / "lambda.keras").read_bytes())
    expected = (f"{fold1 / 'model.keras'} holds Python code (the function of a Lambda layer), "
                "which is not loaded, for safety: train.py never writes code into a model, so "
                "this file was not written by train.py (it may be malicious: do not load it "
                f"with safe mode off); {_retrain(model_dir, fold1)}")
    with pytest.raises(PredictionError) as refused:  # predict.py and export.py
        ensemble.load_ensemble(str(model_dir), log=lambda line: None)
    assert str(refused.value) == expected
    with pytest.raises(EvaluationError) as refused:  # evaluate.py
        evaluation.load_model(str(fold1))
    assert str(refused.value) == expected
    assert not ran.exists()


@pytest.mark.parametrize("cut", ["half", "empty"])
def test_a_cut_short_model_file_is_damaged_in_the_projects_words(cut, tmp_path):
    import keras

    from keras_audio_cnn import ensemble, evaluation
    from keras_audio_cnn.errors import EvaluationError, PredictionError

    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(tmp_path / "whole.keras")
    whole = (tmp_path / "whole.keras").read_bytes()
    model_dir, fold1 = _hand_made_run(tmp_path, whole[:len(whole) // 2] if cut == "half" else b"")
    expected = (f"{fold1 / 'model.keras'} is damaged: it is not a whole .keras archive (cut "
                "short by a full disk, a copy that stopped, or overwritten); "
                f"{_retrain(model_dir, fold1)}")
    with pytest.raises(PredictionError) as refused:
        ensemble.load_ensemble(str(model_dir), log=lambda line: None)
    assert str(refused.value) == expected
    with pytest.raises(EvaluationError) as refused:
        evaluation.load_model(str(fold1))
    assert str(refused.value) == expected
