"""A results report a person reads: accuracy table, confusion matrix, curves.

`write_report` turns what training and evaluation leave behind (a confusion
matrix, per-task accuracies of each run, Keras `CSVLogger` histories) into a
folder holding `report.md` and the PNG figures it links to with relative paths,
so the folder can be moved, zipped or viewed on GitHub as it is. Paths may be any
`tf.io.gfile` path (local, `gs://`, ...).
"""

import csv
import math
import os

from absl import logging

import matplotlib
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from keras_audio_cnn import rundir

CONFUSION_PNG = "confusion_matrix.png"
PER_CLASS_PNG = "per_class_accuracy.png"
CURVES_PNG = "training_curves.png"
REPORT_MD = "report.md"


def _percent(value):
    if value is None or math.isnan(float(value)):
        return "-"
    return f"{100 * value:.2f}"


def _mean(values):
    values = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(values)) if values else None


def accuracy_table(rows):
    """A markdown table of per-task accuracies in percent, with their mean.

    Args:
        rows: dicts `{"task": "fold1", "runs": [acc, ...], "mean": m, "std": s,
            "ensemble": e}` with accuracies in [0, 1]; a missing value shows as "-".

    Returns:
        The table's lines. The last row, "mean over tasks", averages each column
        over tasks; its "runs" cell gives run i's mean over tasks when every
        task has the same number of runs.
    """
    lines = ["| task | runs (%) | mean (%) | std (%) | ensemble (%) |", "|---|---|---|---|---|"]
    for row in rows:
        runs = ", ".join(_percent(a) for a in row.get("runs", ()))
        lines.append(
            f"| {row['task']} | {runs or '-'} | {_percent(row.get('mean'))} | "
            f"{_percent(row.get('std'))} | {_percent(row.get('ensemble'))} |"
        )
    run_lists = [list(row.get("runs", ())) for row in rows]
    if run_lists and run_lists[0] and all(len(r) == len(run_lists[0]) for r in run_lists):
        runs = ", ".join(_percent(_mean(column)) for column in zip(*run_lists))
    else:
        runs = "-"
    means = [_mean([row.get(key) for row in rows]) for key in ("mean", "std", "ensemble")]
    lines.append(f"| **mean over tasks** | {runs} | " + " | ".join(_percent(m) for m in means) + " |")
    return lines


def per_class_accuracy(confusion):
    """Recall of each class (diagonal over row sums); NaN for classes without clips."""
    confusion = np.asarray(confusion, dtype="float64")
    support = confusion.sum(axis=1)
    return np.where(support > 0, confusion.diagonal() / np.maximum(support, 1), np.nan)


def _class_font_size(num_classes):
    return 10 if num_classes <= 15 else (8 if num_classes <= 30 else 6)


def plot_confusion(confusion, class_names, path):
    """Confusion matrix (true rows x predicted columns), coloured by row fraction.

    Colour is the fraction of the true class's clips, so rare and common classes
    read alike; each non-zero cell also shows its count. The figure grows with
    the number of classes (about 0.2 inch a class beyond 10).
    """
    confusion = np.asarray(confusion)
    n = len(class_names)
    fraction = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    size = max(6.0, 1.2 + 0.21 * n + 0.06 * max(len(name) for name in class_names))
    font = _class_font_size(n)
    figure = Figure(figsize=(size + 1.2, size))
    axes = figure.add_subplot()
    shown = axes.imshow(fraction, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    ticks = np.arange(n)
    axes.set_xticks(ticks, class_names, rotation=60, ha="right", rotation_mode="anchor",
                    fontsize=font)
    axes.set_yticks(ticks, class_names, fontsize=font)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    count_font = 9 if n <= 15 else (7 if n <= 30 else 6)
    for i, j in zip(*np.nonzero(confusion)):
        axes.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=count_font,
                  color="white" if fraction[i, j] > 0.5 else "black")
    axes.set_title(f"Confusion matrix ({int(confusion.sum())} clips, "
                   f"accuracy {_percent(np.trace(confusion) / max(confusion.sum(), 1))}%)")
    figure.colorbar(shown, ax=axes, fraction=0.04, pad=0.02, label="fraction of the true class")
    save_png(figure, path, dpi=100, bbox_inches="tight")


def plot_per_class_accuracy(confusion, class_names, path):
    """Horizontal bars of each class's accuracy, in class order, and the overall accuracy."""
    accuracy = per_class_accuracy(confusion)
    confusion = np.asarray(confusion)
    overall = np.trace(confusion) / max(confusion.sum(), 1)
    n = len(class_names)
    font = _class_font_size(n)
    figure = Figure(figsize=(7.5, max(3.0, 1.0 + 0.25 * n)))
    axes = figure.add_subplot()
    rows = np.arange(n)
    axes.barh(rows, 100 * np.nan_to_num(accuracy), color="tab:blue", height=0.7)
    for row, value in zip(rows, accuracy):
        label = "no clips" if np.isnan(value) else f"{100 * value:.0f}"
        axes.text(1 if np.isnan(value) else 100 * value + 1, row, label,
                  va="center", fontsize=font)
    axes.axvline(100 * overall, color="tab:red", linestyle="--")
    axes.set_yticks(rows, class_names, fontsize=font)
    axes.set_ylim(n - 0.5, -0.5)  # first class on top, as in the confusion matrix
    axes.set_xlim(0, 110)
    axes.set_xlabel("accuracy (%)")
    axes.set_title(f"Per-class accuracy (dashed: overall, {100 * overall:.2f}%)")
    save_png(figure, path, dpi=100, bbox_inches="tight")


def save_png(figure, path, **kwargs):
    """`figure.savefig` to any `tf.io.gfile` path (matplotlib writes local files only),
    whole or not at all (`rundir.publish`)."""

    def write(temporary):
        with tf.io.gfile.GFile(temporary, "wb") as f:
            figure.savefig(f, format="png", **kwargs)

    rundir.publish(*os.path.split(path), write)


def read_history(path):
    """Columns of a Keras `CSVLogger` file as float arrays, keyed by header.

    `CSVLogger(append=True)` after `BackupAndRestore` can repeat an epoch; the
    last line for each epoch wins. Cells that are not numbers become NaN. Lines
    whose epoch is not a number (a header written again by a second process, a
    torn line) are left out with a warning.
    """
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"training history {path} does not exist")
    with tf.io.gfile.GFile(path) as f:
        records = list(csv.DictReader(f))
    by_epoch, damaged = {}, 0
    for record in records:
        if None in record or None in record.values():  # more or fewer cells than the header
            damaged += 1
            continue
        try:
            by_epoch[int(float(record["epoch"]))] = record
        except (ValueError, OverflowError):
            damaged += 1
    if damaged:
        logging.warning("%s: %d line(s) that are not an epoch's metrics were left out",
                        path, damaged)
    columns = {}
    for epoch in sorted(by_epoch):
        for key, cell in by_epoch[epoch].items():
            try:
                value = float(cell)
            except (TypeError, ValueError):
                value = math.nan
            columns.setdefault(key, []).append(value)
    return {key: np.array(values) for key, values in columns.items()}


def plot_histories(histories, path):
    """Loss and accuracy per epoch, a colour per history, validation dashed.

    A history without a single epoch's row (a run stopped between an epoch's backup
    and its row, then resumed after that epoch) is left out with a warning; with none
    left, no figure is written. Returns whether it was.
    """
    read = {label: read_history(history_path) for label, history_path in histories.items()}
    for label in [label for label, columns in read.items() if "epoch" not in columns]:
        logging.warning("%s: no epoch's metrics, left out of the training curves",
                        histories[label])
        del read[label]
    if not read:
        return False
    figure = Figure(figsize=(12, 4.5), layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    colours = matplotlib.colormaps["tab10" if len(read) <= 10 else "tab20"]
    for index, (label, columns) in enumerate(read.items()):
        epochs = columns["epoch"] + 1  # CSVLogger counts from 0
        colour = colours(index % colours.N)
        for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
            scale = 100 if metric == "accuracy" else 1
            if metric in columns:
                axes.plot(epochs, scale * columns[metric], color=colour, label=f"{label} train")
            if f"val_{metric}" in columns:
                axes.plot(epochs, scale * columns[f"val_{metric}"], color=colour, linestyle="--",
                          label=f"{label} validation")
    loss_axes.set_ylabel("loss")
    accuracy_axes.set_ylabel("accuracy (%)")
    for axes in (loss_axes, accuracy_axes):
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    loss_axes.set_title("Loss (solid: training, dashed: validation)")
    accuracy_axes.set_title("Accuracy (solid: training, dashed: validation)")
    legend = {}  # one entry per line label, from whichever panel has it
    for axes in (loss_axes, accuracy_axes):
        for handle, label in zip(*axes.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    figure.legend(legend.values(), legend.keys(), loc="outside right upper", fontsize="small")
    save_png(figure, path, dpi=100)
    return True


def write_report(out_dir, *, title, class_names, confusion, rows, histories, notes=()):
    """Writes `report.md` and its figures into `out_dir`.

    Args:
        out_dir: the report's folder, created if missing.
        title: the report's heading.
        class_names: `C` names, in class-id order.
        confusion: `[C, C]` integer counts, true class x predicted class.
        rows: per-task accuracies, as for `accuracy_table`.
        histories: label -> path of a `CSVLogger` history.csv (columns epoch,
            accuracy, loss and, if validated, val_accuracy, val_loss); may be
            empty, then no training-curves figure is drawn.
        notes: lines added at the end, one bullet each.

    Returns:
        The path of `report.md`. Figures: `confusion_matrix.png`,
        `per_class_accuracy.png` and `training_curves.png`, linked from it.

    Example:
        write_report("runs/esc50_DenseNet201/report", title="ESC-50, DenseNet201",
                     class_names=names, confusion=matrix, rows=rows,
                     histories={"fold1": "runs/esc50_DenseNet201/fold1/history.csv"})
    """
    confusion = np.asarray(confusion)
    num_classes = len(class_names)
    if confusion.shape != (num_classes, num_classes):
        raise ValueError(
            f"confusion has shape {confusion.shape}; {num_classes} class names need "
            f"({num_classes}, {num_classes})"
        )
    tf.io.gfile.makedirs(out_dir)
    plot_confusion(confusion, class_names, os.path.join(out_dir, CONFUSION_PNG))
    plot_per_class_accuracy(confusion, class_names, os.path.join(out_dir, PER_CLASS_PNG))

    lines = [f"# {title}", "", "Held-out accuracy (%) of each task:", ""]
    lines += accuracy_table(rows)
    lines += ["", "## Confusion matrix", "", f"![confusion matrix]({CONFUSION_PNG})",
              "", "## Per-class accuracy", "", f"![per-class accuracy]({PER_CLASS_PNG})"]
    if histories and plot_histories(histories, os.path.join(out_dir, CURVES_PNG)):
        lines += ["", "## Training curves", "", f"![training curves]({CURVES_PNG})"]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    path = os.path.join(out_dir, REPORT_MD)
    rundir.write_text(path, "\n".join(lines) + "\n")
    return path
