"""SIGTERM (a job scheduler), SIGINT (Ctrl-C) and SIGHUP (a closed terminal) while each
command writes: one line, the shell's exit status, and no temporary file left anywhere.

Each command runs through `tests/interrupt_helpers.py`, which stops it at a chosen moment
of its writing and says so on a pipe; the signal is sent then, so nothing depends on
timing. The train.py runs are one run interrupted three times and resumed each time.
"""

import os
import select
import signal
import subprocess
import sys

import pytest

from keras_audio_cnn import backup, rundir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
LINE = "{program}: interrupted by {signal}; stopped without leaving a half-written file: {again}"
AGAIN = {"train.py": "rerun the same command to resume (finished models are kept)"}


def interrupt(where, signum, script, *flags):
    """Runs `script` until it stops at `where` (see interrupt_helpers), sends `signum`;
    returns (exit status, stderr)."""
    ready, ready_for_child = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.interrupt_helpers", str(ready_for_child), where, script,
         *flags], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV,
        cwd=ROOT, pass_fds=[ready_for_child])
    os.close(ready_for_child)
    try:
        readable, _, _ = select.select([ready], [], [], 600)
        stopped = readable and os.read(ready, 1)
        if not stopped:  # it ended (or hung) before the moment
            process.kill()
            raise AssertionError(f"{script} never reached {where}:\n"
                                 f"{process.communicate()[1][-3000:]}")
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=300)
    finally:
        os.close(ready)
        process.kill()
        process.wait()
    return process.returncode, stderr


def assert_interrupted(result, program, signum):
    status, stderr = result
    assert status == 128 + signum, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    ours = [line for line in stderr.splitlines() if line.startswith(f"{program}:")]
    assert ours == [LINE.format(program=program, signal=signal.Signals(signum).name,
                                again=AGAIN.get(program, "rerun the same command"))], stderr[-3000:]


def temporaries(*folders):
    """Files and folders left under `folders` that a writer makes on the way to an output."""
    return [str(p) for folder in folders if folder.exists() for p in folder.rglob("*")
            if ".tmp" in p.name or p.name.startswith(("incomplete.", ".write_test_"))
            or p.name.endswith(".lock")]  # the run's, a preparation's


def test_a_signal_waits_for_a_step_that_must_not_be_cut_then_stops_the_program():
    from keras_audio_cnn import interrupts

    before = {s: signal.getsignal(s) for s in interrupts.SIGNALS}
    steps = []
    with pytest.raises(interrupts.Interrupted) as stopped:
        with interrupts.handled():
            with interrupts.deferred():
                signal.raise_signal(signal.SIGHUP)  # handled before raise_signal returns
                steps.append("the step went on")
            steps.append("not reached")
    assert steps == ["the step went on"]
    assert (stopped.value.name, stopped.value.exit_status) == ("SIGHUP", 129)
    assert {s: signal.getsignal(s) for s in interrupts.SIGNALS} == before


@pytest.fixture(scope="module")
def run(make_sounds, folder_flags, tiny_model, run_cli):
    """train.py stopped by each signal at one of its writings, rerun each time (it resumes),
    then run to its end: fold 1 of 2, one epoch."""
    work = make_sounds(classes=("a_low", "b_high"), files_per_class=6, num_folds=2)
    model_dir = work / "model"
    flags = [*folder_flags(work, num_folds=2), *tiny_model, "--folds=1",
             f"--model_dir={model_dir}"]
    fold1 = model_dir / "fold1"
    steps = {}
    for signum, where in [(signal.SIGTERM, "after:keras_audio_cnn.backup:Backup._save_model"),
                          (signal.SIGINT, f"publish:{rundir.MODEL_KERAS}"),
                          (signal.SIGHUP, f"publish:{rundir.SAVED_MODEL}")]:
        result = interrupt(where, signum, "train.py", *flags)
        steps[signum] = dict(result=result, left=temporaries(work),
                             files=sorted(p.name for p in fold1.iterdir()),
                             backup=sorted(os.listdir(fold1 / rundir.BACKUP)))
        steps[signum]["damage"] = backup._damage(
            fold1 / rundir.BACKUP / "latest.weights.h5",
            fold1 / rundir.BACKUP / "training_metadata.json")
    finished = run_cli("train.py", *flags)
    return dict(work=work, model_dir=model_dir, steps=steps, finished=finished.stdout)


@pytest.mark.parametrize("signum, files", [
    (signal.SIGTERM, ["backup", "history.csv", "logs"]),  # after the epoch's backup
    (signal.SIGINT, ["backup", "history.csv", "logs"]),  # writing model.keras
    (signal.SIGHUP, ["backup", "history.csv", "logs", "model.keras"]),  # writing saved_model/
])
def test_train_py_stops_in_one_line_leaving_its_backup_whole(signum, files, run):
    step = run["steps"][signum]
    assert_interrupted(step["result"], "train.py", signum)
    assert step["files"] == files and step["left"] == []
    assert step["damage"] is None and step["backup"] == [
        "latest.weights.h5", "training_metadata.json"]


def test_the_interrupted_run_resumes_to_its_end(run, read_json):
    assert "fold1: accuracy" in run["finished"]
    assert read_json(run["model_dir"], "fold1", "metrics.json")["task"] == "fold1"
    assert temporaries(run["work"]) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_predict_py_writing_its_output_leaves_none(signum, run, tmp_path):
    out = tmp_path / "out.csv"
    result = interrupt("after:keras_audio_cnn.predict_output:_Csv.begin", signum, "predict.py",
                       f"--model_dir={run['model_dir']}", "--format=csv", f"--output={out}",
                       str(run["work"] / "audio"))
    assert_interrupted(result, "predict.py", signum)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("signum, output, where", [
    (signal.SIGTERM, "ensemble", "publish:ensemble"),
    (signal.SIGINT, "ensemble", "publish:ensemble"),
    (signal.SIGHUP, "ensemble.tflite", "publish:ensemble.tflite"),
])
def test_export_py_writing_its_export_leaves_none(signum, output, where, run, tmp_path):
    result = interrupt(where, signum, "export.py", f"--model_dir={run['model_dir']}",
                       f"--format={'tflite' if output.endswith('.tflite') else 'saved_model'}",
                       f"--output={tmp_path / output}")
    assert_interrupted(result, "export.py", signum)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("signum, where, written", [
    (signal.SIGTERM, "publish:evaluation.json", []),
    (signal.SIGINT, "publish:confusion_matrix.png", ["evaluation.json", "evaluation.md"]),
    # No training curves: the run's one epoch has no row in history.csv, as SIGTERM came
    # between the epoch's backup and its row (test_train_py_stops_in_one_line...).
    (signal.SIGHUP, "publish:report.md", ["confusion_matrix.png", "evaluation.json",
                                          "evaluation.md", "per_class_accuracy.png"]),
])
def test_evaluate_py_writing_its_report_leaves_no_temporary(signum, where, written, run,
                                                            tmp_path):
    result = interrupt(where, signum, "evaluate.py", f"--model_dir={run['model_dir']}",
                       f"--output_dir={tmp_path}")
    assert_interrupted(result, "evaluate.py", signum)
    assert sorted(os.listdir(tmp_path)) == written  # each whole, or not there
