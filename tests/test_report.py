"""The results report: figures, accuracy table and links."""

import csv
import os
import re

import matplotlib.image
import numpy as np
import pytest

from keras_audio_cnn import report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAMES_10 = ["dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow"]
ROWS = [
    {"task": "fold1", "runs": [0.8125, 0.8250], "mean": 0.81875, "std": 0.00625, "ensemble": 0.8500},
    {"task": "fold2", "runs": [0.7000, 0.7375], "mean": 0.71875, "std": 0.01875, "ensemble": 0.7525},
    {"task": "fold3", "runs": [0.9000, 0.8875], "mean": 0.89375, "std": 0.00625, "ensemble": 0.9125},
]


def write_history(path, epochs, validation, repeat_epoch=None):
    """A CSVLogger-style history; `repeat_epoch` mimics a resumed run."""
    columns = ["epoch", "accuracy", "learning_rate", "loss"]
    if validation:
        columns += ["val_accuracy", "val_loss"]
    lines = []
    for epoch in range(epochs):
        row = [epoch, 0.5 + 0.04 * epoch, 1e-4, 2.0 - 0.1 * epoch]
        if validation:
            row += [0.45 + 0.03 * epoch, 2.2 - 0.08 * epoch]
        lines.append(row)
        if epoch == repeat_epoch:
            lines.append(row)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(lines)
    return str(path)


def confusion_matrix(num_classes, seed=0):
    rng = np.random.default_rng(seed)
    confusion = np.diag(rng.integers(2, 9, num_classes))
    np.add.at(confusion, (rng.integers(0, num_classes, 30), rng.integers(0, num_classes, 30)), 1)
    confusion[-1] = 0  # a class without test clips
    return confusion


def table_rows(markdown):
    """The cells of each markdown table row, header and separator excluded."""
    rows = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def png_size(path):
    with open(path, "rb") as f:
        header = f.read(24)
    assert header[:8] == PNG_SIGNATURE, path
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


@pytest.fixture(scope="module")
def ten_class_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    histories = {
        "fold1": write_history(folder / "fold1.csv", 6, validation=True, repeat_epoch=2),
        "fold2": write_history(folder / "fold2.csv", 4, validation=False),
    }
    out_dir = folder / "out"
    path = report.write_report(
        str(out_dir), title="ESC-10, DenseNet201", class_names=NAMES_10,
        confusion=confusion_matrix(10), rows=ROWS, histories=histories,
        notes=["5 epochs only: a smoke run.", "Ensembles average logits."],
    )
    return path, out_dir


def test_report_links_existing_pngs_by_relative_path(ten_class_report):
    path, out_dir = ten_class_report
    assert path == os.path.join(str(out_dir), "report.md")
    text = open(path, encoding="utf-8").read()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links == ["confusion_matrix.png", "per_class_accuracy.png", "training_curves.png"]
    for link in links:
        assert not os.path.isabs(link)
        width, height = png_size(os.path.join(out_dir, link))
        pixels = matplotlib.image.imread(os.path.join(out_dir, link))
        assert pixels.shape[:2] == (height, width) and width >= 400 and height >= 250
    assert text.startswith("# ESC-10, DenseNet201\n")
    assert "- 5 epochs only: a smoke run.\n" in text and "- Ensembles average logits.\n" in text


def percent(accuracy):
    return f"{100 * accuracy:.2f}"


def test_table_numbers_equal_the_inputs_in_percent(ten_class_report):
    text = open(ten_class_report[0], encoding="utf-8").read()
    cells = table_rows(text)
    assert [row[0] for row in cells] == ["fold1", "fold2", "fold3", "**mean over tasks**"]
    for row, expected in zip(cells, ROWS):
        assert row[1] == ", ".join(percent(a) for a in expected["runs"])
        assert row[2:] == [percent(expected[key]) for key in ("mean", "std", "ensemble")]
        # Two decimals of a percentage: within half a unit of the input.
        assert float(row[2]) == pytest.approx(100 * expected["mean"], abs=0.0051)
    mean_row = cells[-1]
    run_means = np.mean([r["runs"] for r in ROWS], axis=0)
    assert mean_row[1] == ", ".join(percent(a) for a in run_means)
    assert mean_row[2:] == [
        percent(np.mean([r[key] for r in ROWS])) for key in ("mean", "std", "ensemble")
    ]


def test_history_reader_keeps_the_last_line_of_a_repeated_epoch(tmp_path):
    with_validation = report.read_history(write_history(tmp_path / "a.csv", 5, True, repeat_epoch=1))
    np.testing.assert_array_equal(with_validation["epoch"], np.arange(5))
    np.testing.assert_allclose(with_validation["val_loss"], 2.2 - 0.08 * np.arange(5))
    without = report.read_history(write_history(tmp_path / "b.csv", 3, False))
    assert "val_loss" not in without and len(without["loss"]) == 3


def test_a_damaged_history_is_read_with_a_warning_not_a_traceback(tmp_path, caplog):
    # Two processes appending to one history.csv (before the model dir was locked)
    # wrote a second header; a kill can tear the last line.
    path = tmp_path / "h.csv"
    write_history(path, 3, True)
    text = path.read_text()
    path.write_text(text + text + "3,0.5,")
    history = report.read_history(str(path))
    np.testing.assert_array_equal(history["epoch"], np.arange(3))
    np.testing.assert_allclose(history["loss"], 2.0 - 0.1 * np.arange(3))
    assert "2 line(s) that are not an epoch's metrics were left out" in caplog.text


def test_fifty_classes_get_a_larger_legible_confusion_matrix(ten_class_report, tmp_path):
    names = [f"class_{i:02d}" for i in range(50)]
    path = report.write_report(
        str(tmp_path), title="ESC-50", class_names=names, confusion=confusion_matrix(50),
        rows=ROWS[:1], histories={},
    )
    text = open(path, encoding="utf-8").read()
    assert "training_curves.png" not in text  # no histories, no curves
    for name in ("confusion_matrix.png", "per_class_accuracy.png"):
        assert f"({name})" in text
    small = png_size(os.path.join(ten_class_report[1], "confusion_matrix.png"))
    large = png_size(str(tmp_path / "confusion_matrix.png"))
    # ~20 pixels or more per class, so 50 labels do not overlap.
    assert large[0] > 1.5 * small[0] and large[1] >= 50 * 20
    assert png_size(str(tmp_path / "per_class_accuracy.png"))[1] >= 50 * 20


def test_mismatched_confusion_is_refused(tmp_path):
    with pytest.raises(ValueError, match="class names"):
        report.write_report(str(tmp_path), title="t", class_names=NAMES_10[:3],
                            confusion=np.eye(4, dtype=int), rows=ROWS, histories={})


def test_missing_history_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        report.write_report(str(tmp_path), title="t", class_names=NAMES_10,
                            confusion=confusion_matrix(10), rows=ROWS,
                            histories={"fold1": str(tmp_path / "nope.csv")})


def test_a_history_without_an_epoch_is_left_out_of_the_curves_with_a_warning(tmp_path, caplog):
    # A run stopped between its one epoch's backup and that epoch's row, then resumed
    # after it, has an empty history.csv (or one with only a header).
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("epoch,accuracy,learning_rate,loss\n")
    out = tmp_path / "out"
    path = report.write_report(
        str(out), title="t", class_names=NAMES_10, confusion=confusion_matrix(10), rows=ROWS,
        histories={"fold1": str(tmp_path / "empty.csv"), "fold2": str(tmp_path / "header.csv")})
    assert "training_curves.png" not in open(path, encoding="utf-8").read()
    assert sorted(os.listdir(out)) == ["confusion_matrix.png", "per_class_accuracy.png",
                                       "report.md"]
    assert "empty.csv: no epoch's metrics, left out of the training curves" in caplog.text
    path = report.write_report(  # beside a history with epochs, only that one is drawn
        str(out), title="t", class_names=NAMES_10, confusion=confusion_matrix(10), rows=ROWS,
        histories={"fold1": str(tmp_path / "empty.csv"),
                   "fold2": write_history(tmp_path / "full.csv", 3, True)})
    assert "(training_curves.png)" in open(path, encoding="utf-8").read()


def test_report_files_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def fail(self, *args, **kwargs):  # e.g. a full disk, or a signal, while a figure is saved
        args[0].write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", fail)
    with pytest.raises(OSError):
        report.write_report(str(tmp_path), title="t", class_names=NAMES_10,
                            confusion=confusion_matrix(10), rows=ROWS, histories={})
    assert os.listdir(tmp_path) == []
