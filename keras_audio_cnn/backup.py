"""The epoch backup of a model in training: resumable after a kill, a damaged file or a
full disk.

`Backup` is Keras's `BackupAndRestore` (two epochs kept: the last and the one
before) with three additions:

- a backup that cannot be read back (a file torn by a kill, or truncated when the
  disk filled up) is detected before anything is loaded: the epoch before is used,
  or, if that is damaged too, the model trains again from its first epoch; a line
  says which;
- before each save, the free space is checked: a disk too full for the backup stops
  the run with one line naming the directory and the space needed, instead of a
  half-written file (writing HDF5 onto a full disk can crash the process);
- `history.csv` keeps one row per epoch before the epoch training resumes from;
- a SIGTERM, SIGHUP or Ctrl-C while a backup is written waits until it is whole
  (`interrupts.deferred`).
"""

import csv
import io
import json
import os
import shutil

import h5py
import keras
import numpy as np
import tensorflow as tf

from keras_audio_cnn import interrupts, rundir
from keras_audio_cnn.errors import UserError

# Room kept free beside a backup, for metadata and the file system's own needs.
SPARE_BYTES = 16 * 2**20


class DiskFullError(UserError):
    """Not enough free space to write a model's outputs."""


def _damage(weights_path, metadata_path):
    """Why a backup cannot be restored (a phrase), or None if it reads back whole."""
    try:
        with h5py.File(weights_path, "r") as f:
            f.visititems(lambda name, item: item[()] if isinstance(item, h5py.Dataset) else None)
        with tf.io.gfile.GFile(metadata_path) as f:
            epoch = json.load(f)["epoch"]
        if not isinstance(epoch, int):
            return f"its epoch is {epoch!r}"
    except Exception as error:  # h5py and json report damage in many ways
        return f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"
    return None


def trim_history(path, epochs_done):
    """Keeps one row per epoch of a CSVLogger file, for the epochs before `epochs_done`.

    Rows of later epochs (trained after the backup being resumed from), repeated
    header lines and rows that are not numbers (a torn last line) are dropped.
    """
    if not tf.io.gfile.exists(path):
        return
    with tf.io.gfile.GFile(path) as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header, kept = rows[0], {}
    for row in rows[1:]:
        try:
            epoch = int(row[0])
        except (ValueError, IndexError):
            continue
        if epoch < epochs_done and len(row) == len(header):
            kept[epoch] = row
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(kept[epoch] for epoch in sorted(kept))
    rundir.write_text(path, out.getvalue() if kept else "")


class Backup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` into `run_dir/backup`, kept after `fit` returns (see module).

    The trainer deletes it only once `metrics.json` is written, so a run killed
    during precise BN, evaluation or export resumes after the last epoch instead
    of training again.

    Args:
        run_dir: the model's directory.
        history_path: its CSVLogger file, trimmed to the epochs resumed from.
        label: the model's name in messages, e.g. "fold1".
    """

    def __init__(self, run_dir, history_path=None, label="model"):
        super().__init__(os.path.join(run_dir, rundir.BACKUP), double_checkpoint=True,
                         delete_checkpoint=False)
        self.history_path = history_path
        self.label = label

    def on_train_begin(self, logs=None):
        self._discard_damaged()
        super().on_train_begin(logs)
        if self.history_path:
            trim_history(self.history_path, getattr(self.model, "_initial_epoch", 0) or 0)

    def _discard_damaged(self):
        if not tf.io.gfile.exists(self._weights_path):
            return
        damage = _damage(self._weights_path, self._training_metadata_path)
        if damage is None:
            return
        previous = (tf.io.gfile.exists(self._prev_weights_path)
                    and _damage(self._prev_weights_path, self._prev_training_metadata_path))
        if tf.io.gfile.exists(self._prev_weights_path) and not previous:
            print(f"{self.label}: the backup of the last epoch in {self.backup_dir} is damaged "
                  f"({damage}); resuming from the epoch before it")
            tf.io.gfile.copy(self._prev_weights_path, self._weights_path, overwrite=True)
            tf.io.gfile.copy(self._prev_training_metadata_path, self._training_metadata_path,
                             overwrite=True)
        else:
            print(f"{self.label}: every backup in {self.backup_dir} is damaged ({damage}); "
                  "training this model again from its first epoch")
            rundir.remove(self.backup_dir)

    def bytes_needed(self):
        """Free bytes the next save needs: the weights and optimizer state, and a copy
        of the previous backup if there is none yet."""
        variables = list(self.model.weights)
        if self.model.optimizer is not None:
            variables += list(self.model.optimizer.variables)
        size = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
        copy = size if (tf.io.gfile.exists(self._weights_path)
                        and not tf.io.gfile.exists(self._prev_weights_path)) else 0
        return int(1.1 * (size + copy)) + SPARE_BYTES

    def _save_model(self):
        if "://" not in self.backup_dir:
            tf.io.gfile.makedirs(self.backup_dir)
            needed, free = self.bytes_needed(), shutil.disk_usage(self.backup_dir).free
            if free < needed:
                raise DiskFullError(
                    f"no space left for {self.label}'s epoch backup in {self.backup_dir}: it "
                    f"needs about {needed / 2**20:.0f} MB and {free / 2**20:.0f} MB are free; "
                    "free some space or use a --model_dir on a larger disk, then rerun the "
                    "same command to resume")
        # A signal waits for the whole backup: its weights and the epoch they are of
        # (written one after the other) must not be cut apart.
        with interrupts.deferred():
            super()._save_model()
