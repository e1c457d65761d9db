"""predict.py's outputs: a table for people, CSV and JSON for programs, written as results come.

Every format names classes, never indices. CSV has a row per file,
`path,label,probability,<one column per class, in the model's order>` (the label
is the most probable class), or with `per_window` a row per window,
`path,start,end,label,probability,<classes>` (seconds). JSON is a list with an
object per file, `{"path", "label", "probability", "probabilities": {class: p}}`,
and with `per_window` its `"windows"`: `[{"start", "end", "label", "probability",
"probabilities"}]`. Inputs that could not be classified are not rows: each is
one line through `on_error`.

A path is written as the bytes the OS gave for it (`os.fsencode`), so that a file
name that is not UTF-8 reads back as the same name: in CSV and the table its own
bytes, in JSON (ASCII, `json.dumps`) escaped as Python's `os.fsdecode` reads it
(`"\\udcff"` for the byte 0xff), which `os.fsencode` turns back into the bytes.
"""

import codecs
import csv
import json
import os
import sys

import tensorflow as tf

from keras_audio_cnn import predict, rundir
from keras_audio_cnn.errors import PredictionError
from keras_audio_cnn.predict import top_classes

FORMATS = ("table", "csv", "json")


def write(results, out, output_format, class_names, *, top_k=3, per_window=False,
          on_error=print):
    """Writes `results` (predict.FileResult) to the text stream `out` as they come.

    Returns (files classified, inputs failed).
    """
    writer = {"table": _Table, "csv": _Csv, "json": _Json}[output_format](
        out, class_names, top_k, per_window)
    done = failed = 0
    writer.begin()
    for result in results:
        if result.error:
            failed += 1
            on_error(result.error)
            continue
        done += 1
        writer.file(result)
        out.flush()
    writer.end()
    return done, failed


class _Writer:
    def __init__(self, out, class_names, top_k, per_window):
        self.out, self.class_names = out, list(class_names)
        self.top_k, self.per_window = max(1, min(int(top_k), len(class_names))), per_window

    def begin(self):
        pass

    def end(self):
        pass

    def _fields(self, probabilities):
        """label, probability and the per-class probabilities."""
        (label, probability), = top_classes(probabilities, self.class_names, 1)
        return label, probability, [float(p) for p in probabilities]


class _Table(_Writer):
    """Top-k classes with probabilities, then the file (and its windows' times)."""

    def begin(self):
        self.width = max(len(n) for n in self.class_names) + 7
        self._line([f"top {i + 1}" for i in range(self.top_k)], "file")

    def file(self, result):
        self._row(result.probabilities, result.path)
        for window in result.windows or ():
            self._row(window.probabilities, f"  {window.start:.2f}-{window.end:.2f} s")

    def _row(self, probabilities, where):
        top = top_classes(probabilities, self.class_names, self.top_k)
        self._line([f"{name} {p:.3f}" for name, p in top], where)

    def _line(self, cells, where):
        self.out.write("  ".join(c.ljust(self.width) for c in cells) + "  " + where + "\n")


class _Csv(_Writer):
    def begin(self):
        self.csv = csv.writer(self.out, lineterminator="\n")
        times = ["start", "end"] if self.per_window else []
        self.csv.writerow(["path", *times, "label", "probability", *self.class_names])

    def file(self, result):
        if not self.per_window:
            label, probability, each = self._fields(result.probabilities)
            self.csv.writerow([result.path, label, probability, *each])
            return
        for window in result.windows:
            label, probability, each = self._fields(window.probabilities)
            self.csv.writerow([result.path, window.start, window.end, label, probability, *each])


class _Json(_Writer):
    def begin(self):
        self.out.write("[")
        self.separator = "\n"

    def file(self, result):
        record = {"path": result.path, **self._object(result.probabilities)}
        if self.per_window:
            record["windows"] = [{"start": w.start, "end": w.end, **self._object(w.probabilities)}
                                 for w in result.windows]
        self.out.write(self.separator + json.dumps(record))
        self.separator = ",\n"

    def end(self):
        self.out.write("\n]\n")

    def _object(self, probabilities):
        label, probability, each = self._fields(probabilities)
        return {"label": label, "probability": probability,
                "probabilities": dict(zip(self.class_names, each))}


def classify_to_output(paths, model_dirs, *, output=None, output_format="table", top_k=3,
                       per_window=False, hop_seconds=None, batch_size=None, progress=False,
                       on_error=print, log=print, precision="float32", pretrained=None,
                       weights="audioset"):
    """`predict.classify` written to `output` (atomically: a temporary file renamed into
    place once every input is done) or to stdout. Returns (classified, failed)."""
    if not paths:
        raise PredictionError("give the audio files or folders to classify, e.g. "
                              "predict.py --model_dir=runs/esc50_DenseNet201 recording.wav")
    if output:
        _check_output(output)
    results = predict.classify(paths, model_dirs, hop_seconds=hop_seconds, per_window=per_window,
                               batch_size=batch_size or predict.DEFAULT_BATCH_SIZE,
                               progress=progress, log=log, precision=precision,
                               pretrained=pretrained, weights=weights)
    class_names = results.class_names
    options = dict(top_k=top_k, per_window=per_window, on_error=on_error)
    if not output:
        return write(results, sys.stdout, output_format, class_names, **options)
    counts = []

    def write_file(path):
        with tf.io.gfile.GFile(path, "wb") as binary:
            # UTF-8, with every path as the bytes the OS gave (as stdout, `cli.run_or_exit`)
            out = codecs.getwriter("utf-8")(binary, errors="surrogateescape")
            counts.append(write(results, out, output_format, class_names, **options))

    directory, name = os.path.split(os.path.abspath(output))
    rundir.publish(directory, name, write_file)
    return counts[0]


def _check_output(output):
    """Refuses an output that would replace a directory or go into a missing one."""
    if tf.io.gfile.isdir(output):
        raise PredictionError(f"--output={output} is a directory; give a file name, e.g. "
                              f"{os.path.join(output, 'predictions.csv')}")
    parent = os.path.dirname(os.path.abspath(output))
    if not tf.io.gfile.isdir(parent):
        raise PredictionError(f"--output={output}: its folder {parent} does not exist; "
                              "create it first")
