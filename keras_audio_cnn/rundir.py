"""A run directory: where `train.py` puts each model, what marks it finished, how to read it.

The layout (docs/run_directory.md is the full specification):

    <model_dir>/run.json            the run's flags (TrainConfig.to_flags), its tasks,
                                    model_dir and data_dir; written before training
    <model_dir>/summary.json, .md   per-model accuracy, failures, classes, versions
    <model_dir>/<task>/             the model of a task ("fold3", "test") with --runs=1
    <model_dir>/<task>/run<r>/      run r's model of the task with --runs > 1
        model.keras, saved_model/   the model, as a Keras file and a serving SavedModel
        history.csv, logs/          per-epoch metrics (CSVLogger) and TensorBoard logs
        backup/                     the last completed epochs, while training
        metrics.json                written last: its presence marks a finished model

This module is the one place that knows these rules: the trainer writes through
it, and `evaluate.py` (and anything else that asks "which models does this run
have") reads through it. Every path may be any `tf.io.gfile` path (local, gs://,
...); every file is written under a temporary name and renamed into place, so a
reader never sees half of one.
"""

import datetime
import json
import os
import re
import socket
import tempfile
import zipfile

import tensorflow as tf

from keras_audio_cnn import interrupts
from keras_audio_cnn.errors import UserError

RUN_JSON = "run.json"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
METRICS_JSON = "metrics.json"
MODEL_KERAS = "model.keras"
SAVED_MODEL = "saved_model"
HISTORY_CSV = "history.csv"
BACKUP = "backup"
LOGS = "logs"
LOCK = ".lock"
# What evaluate.py writes beside the run (and --overwrite removes with it).
EVALUATION_OUTPUTS = ("evaluation.json", "evaluation.md", "report.md", "confusion_matrix.png",
                      "per_class_accuracy.png", "training_curves.png", "saliency")
_RUN = re.compile(r"run(\d+)$")


class RunDirError(UserError):
    """A directory that is not (or not yet) what train.py writes."""


def job_location(model_dir, task_name, run_number, runs):
    """(key, directory) of one model: `fold1`, `fold1/` alone; `fold1/run2`, `fold1/run2/`
    among several runs."""
    if runs == 1:
        return task_name, os.path.join(model_dir, task_name)
    key = f"{task_name}/run{run_number}"
    return key, os.path.join(model_dir, task_name, f"run{run_number}")


def read_metrics(run_dir):
    """The metrics of a finished model (its `metrics.json`), or None if it is not finished."""
    path = os.path.join(run_dir, METRICS_JSON)
    return read_json(path) if tf.io.gfile.exists(path) else None


def is_finished(run_dir):
    return tf.io.gfile.exists(os.path.join(run_dir, METRICS_JSON))


def model_directories(model_dir, task_name):
    """Every directory train.py may have started for one task: `task/` or `task/run*/`."""
    task_dir = os.path.join(model_dir, task_name)
    if not tf.io.gfile.isdir(task_dir):
        return []
    names = [n.rstrip("/") for n in tf.io.gfile.listdir(task_dir)]  # gs:// adds "/"
    runs = sorted((int(m.group(1)), n) for n in names if (m := _RUN.match(n)))
    if not runs or is_finished(task_dir):
        return [task_dir]
    return [os.path.join(task_dir, n) for _, n in runs]


def finished_models(model_dir, task_name):
    """The directories of a task that hold a finished model (see `is_finished`)."""
    return [d for d in model_directories(model_dir, task_name) if is_finished(d)]


def unfinished_models(model_dir, task_name):
    """Directories of a task that train.py started but did not finish (no metrics.json).

    Whatever they hold (a backup, a `model.tmp.keras` or `saved_model.tmp` of a
    killed export, even a `model.keras` whose export did not complete) is not a
    finished model and is never loaded.
    """
    return [d for d in model_directories(model_dir, task_name) if not is_finished(d)]


def read_run(model_dir):
    """The flags a `train.py` run recorded in `model_dir/run.json`."""
    if not tf.io.gfile.isdir(model_dir):
        raise RunDirError(
            f"--model_dir={model_dir} does not exist; pass a directory train.py wrote")
    path = os.path.join(model_dir, RUN_JSON)
    if not tf.io.gfile.exists(path):
        raise RunDirError(
            f"{model_dir} holds no train.py run (no {RUN_JSON}); pass the --model_dir "
            "that train.py wrote, or train first: python train.py --model_dir=...")
    return read_json(path)


def publish(run_dir, name, write):
    """Writes the output `name` of a model with `write(path)` at a temporary path, then
    renames it into place (a file or a directory), replacing what was there.

    If `write` fails or is interrupted (`interrupts`), the temporary is removed and
    what was there stays; the replacement itself is not cut in two by a signal.
    """
    stem, extension = os.path.splitext(name)
    temporary = os.path.join(run_dir, f"{stem}.tmp{extension}")
    remove(temporary)  # a killed attempt's half output
    try:
        write(temporary)
        final = os.path.join(run_dir, name)
        with interrupts.deferred():
            if tf.io.gfile.isdir(final):
                tf.io.gfile.rmtree(final)
            tf.io.gfile.rename(temporary, final, overwrite=True)
    except BaseException:
        remove(temporary)
        raise


def load_model(run_dir, model_dir=None, error=UserError):
    """The Keras model of a finished model directory (its `model.keras`), in Keras's safe
    mode; a file that cannot be loaded is one line (an `error`) saying why, in this
    project's words, and how to get the model back: retrain it (`model_dir`, the run's
    directory, defaults to the task directory's parent).

    A `model.keras` that is not a whole zip archive is damaged (cut short, overwritten);
    one that holds Python code (a `Lambda` layer's function, which safe mode refuses to
    run) was not written by train.py, which never saves code, and is not loaded.
    """
    path = os.path.join(run_dir, MODEL_KERAS)
    try:
        return tf.keras.models.load_model(path)  # safe_mode=True: no code is run
    except Exception as failure:  # Keras reports every problem its own way
        problem = _model_file_problem(path) or (
            f"cannot be loaded by Keras {tf.keras.__version__} "
            f"({type(failure).__name__}: {' '.join(str(failure).split())[:200]})")
    if model_dir is None:  # run_dir is <model_dir>/<task> or <model_dir>/<task>/run<r>
        task_dir = os.path.normpath(run_dir)
        if _RUN.match(os.path.basename(task_dir)):
            task_dir = os.path.dirname(task_dir)
        model_dir = os.path.dirname(task_dir)
    raise error(f"{path} {problem}; retrain that model: delete {run_dir} and rerun the train.py "
                f"command of {model_dir} (its flags are in {os.path.join(model_dir, RUN_JSON)})")


def _model_file_problem(path):
    """What is wrong with a `model.keras` that Keras could not load (a phrase), or None."""
    if not tf.io.gfile.exists(path):
        return "is missing (its metrics.json says the model was finished)"
    try:
        with tf.io.gfile.GFile(path, "rb") as f, zipfile.ZipFile(f) as archive:
            broken = archive.testzip()
            if broken:
                return (f"is damaged: its part {broken} does not match its checksum (the file "
                        "was overwritten or damaged on the disk)")
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, EOFError, tf.errors.InvalidArgumentError):  # (too short to seek)
        return ("is damaged: it is not a whole .keras archive (cut short by a full disk, a "
                "copy that stopped, or overwritten)")
    except (KeyError, ValueError):  # no config.json, or not JSON
        return ("is damaged: its config.json is missing or not JSON (it was not written by "
                "train.py, or was changed since)")
    if _holds_code(config):
        return ("holds Python code (the function of a Lambda layer), which is not loaded, for "
                "safety: train.py never writes code into a model, so this file was not written "
                "by train.py (it may be malicious: do not load it with safe mode off)")
    return None


def _holds_code(config):
    """Whether a Keras config holds a serialized Python function (`__lambda__`)."""
    if isinstance(config, dict):
        return config.get("class_name") == "__lambda__" or any(
            _holds_code(v) for v in config.values())
    if isinstance(config, list):
        return any(_holds_code(v) for v in config)
    return False


def mark_finished(run_dir, metrics):
    """Writes `metrics.json`, after every other output: the model is now finished."""
    write_json(os.path.join(run_dir, METRICS_JSON), metrics)


def write_text(path, text):
    """Writes a text file atomically (`publish`). UTF-8, where a path that is not UTF-8
    (`os.fsdecode` of bytes such as \\xff) is written as the bytes the OS gave."""

    def write(temporary):
        with tf.io.gfile.GFile(temporary, "wb") as f:
            f.write(encode(text))

    publish(*os.path.split(path), write)


def encode(text):
    """`text` as the bytes of a text file: UTF-8, with the file names it holds as the OS
    gave them (`os.fsencode`: also a name that is not UTF-8)."""
    return text.encode("utf-8", "surrogateescape")


def write_json(path, value):
    write_text(path, json.dumps(value, indent=2) + "\n")


def read_json(path):
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def remove(path):
    """Deletes a file or directory tree if it exists."""
    if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
    elif tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)


def check_writable_dir(path, flag):
    """Refuses, in one line, a `--flag` directory that is a file, lies under a file or
    cannot be created; creates nothing (a remote `gs://...` path is not checked)."""
    if "://" in path:
        return
    target = os.path.abspath(os.path.expanduser(path))
    existing = target
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "is a file" if existing == target else f"lies under {existing}, which is a file"
        raise RunDirError(f"--{flag}={path} {where}; pass a directory")
    try:  # the real test, as permissions and read-only mounts decide
        with interrupts.deferred():  # never a test folder left behind
            os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".write_test_"))
    except OSError as error:
        raise RunDirError(f"cannot create --{flag}={path}: {existing} is not writable "
                          f"({error.strerror}); pass a directory you can write") from None


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """`<model_dir>/.lock` while a `train.py` process writes the run: one writer at a time.

    The lock file names its holder (host, pid, start time). A lock left by a process
    of this host that is no longer running is stale and taken over; one held by a
    live process, or by another host (which cannot be checked from here), is
    refused with one line naming the holder. On a local file system the lock file
    is created atomically (O_EXCL); on a remote one (gs://) only best effort.
    """

    def __init__(self, model_dir):
        self.path = os.path.join(model_dir, LOCK)
        self.holder = {"host": socket.gethostname(), "pid": os.getpid(),
                       "started": datetime.datetime.now().isoformat(timespec="seconds")}

    def check(self):
        """Raises `RunDirError` if another live process holds the lock (takes nothing)."""
        other = self._holder()
        if other and not self._stale(other):
            raise RunDirError(
                f"{os.path.dirname(self.path)} is being written by process {other.get('pid')} "
                f"on {other.get('host')} (since {other.get('started')}); wait for it to "
                f"finish or use another --model_dir (if that process is gone, delete "
                f"{self.path})")

    def __enter__(self):
        for _ in range(2):
            self.check()
            self._remove_stale()
            if self._create():
                return self
        raise RunDirError(f"{self.path} was taken by another process just now; retry")

    def __exit__(self, *exc_info):
        if self._holder() == self.holder:
            remove(self.path)

    def _holder(self):
        try:
            return read_json(self.path)
        except (tf.errors.NotFoundError, FileNotFoundError):
            return None
        except ValueError:  # being written, or torn: a holder we cannot name
            return {"host": "?", "pid": "?", "started": "?"}

    def _stale(self, other):
        return (other.get("host") == self.holder["host"] and isinstance(other.get("pid"), int)
                and not _process_alive(other["pid"]))

    def _remove_stale(self):
        other = self._holder()
        if other and self._stale(other):
            print(f"{self.path}: taking over the lock of process {other['pid']}, which is no "
                  "longer running")
            remove(self.path)

    def _create(self):
        text = json.dumps(self.holder) + "\n"
        tf.io.gfile.makedirs(os.path.dirname(self.path))
        if "://" in self.path:
            if tf.io.gfile.exists(self.path):
                return False
            write_text(self.path, text)
            return True
        with interrupts.deferred():  # an empty lock file would name no holder
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(descriptor, "w") as f:
                f.write(text)
        return True


def clear_run(model_dir, task_names):
    """Removes what a run wrote in `model_dir` (for `--overwrite`): its records, summary,
    evaluation outputs and the directories of `task_names`; nothing else."""
    for name in (RUN_JSON, SUMMARY_JSON, SUMMARY_MD, *EVALUATION_OUTPUTS, *task_names):
        remove(os.path.join(model_dir, name))
