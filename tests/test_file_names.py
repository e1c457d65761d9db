"""File names as archives from other systems bring them: bytes that are not UTF-8, a comma, a
newline. Each is trained on, classified, and comes back out of every output as the same name."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tfds_builders.audio_folder import fake_data as folder_fake

CLASSES = ("a_low", "b_high")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
# Relative paths (bytes, as the file system holds them) of the odd names.
NOT_UTF8 = b"a_low/bad\xff\xfename.wav"  # e.g. Latin-1 or UTF-16 bytes from another system
PUNCTUATED = b"b_high/comma, and\nnewline.wav"
ACCENTED = "b_high/d\u00e9j\u00e0 vu.wav".encode()  # UTF-8, not ASCII


def _audio_paths(audio):
    """{relative path as bytes: as Python names it (os.fsdecode)} of every audio file."""
    found = {}
    for directory, _, names in os.walk(os.fsencode(audio)):
        for name in names:
            if name.endswith((b".wav", b".flac", b".ogg")) and not name.startswith(b"."):
                path = os.path.join(directory, name)
                found[os.path.relpath(path, os.fsencode(audio))] = os.fsdecode(path)
    return found


@pytest.fixture(scope="module")
def trained(make_sounds, folder_flags, tiny_model, run_cli):
    """A run of fold 1 of 2 on a folder holding the odd names (the one that is not UTF-8 is
    silent, so it is also a suspect file named in the console and summary.md); folds.csv
    lists each file by the bytes of its name and puts every odd one in fold 1."""
    work = make_sounds(classes=CLASSES, files_per_class=6)
    audio = os.fsencode(work / "audio")
    rate = 16000
    silent = np.zeros(int(0.45 * rate))
    sf.write(os.path.join(audio, NOT_UTF8), silent, rate, subtype="PCM_16")
    tone = folder_fake.tone(np.random.default_rng(0), folder_fake.class_frequency(1, 2), 0.45,
                            rate, 1)
    for name in (PUNCTUATED, ACCENTED):
        sf.write(os.path.join(audio, name), tone, rate, subtype="PCM_16")
    odd = {NOT_UTF8, PUNCTUATED, ACCENTED}
    others = sorted(set(_audio_paths(work / "audio")) - odd)
    rows = [[os.fsdecode(p), 1] for p in odd] + [[os.fsdecode(p), i % 2 + 1]
                                                   for i, p in enumerate(others)]
    with open(os.path.join(audio, b"folds.csv"), "w", newline="",
              errors="surrogateescape") as f:  # the names' own bytes
        csv.writer(f).writerows([["filename", "fold"], *rows])
    model_dir = work / "model"
    result = run_cli("train.py", *folder_flags(work, num_folds=2), *tiny_model, "--folds=1",
                     f"--model_dir={model_dir}")
    return dict(work=work, audio=work / "audio", model_dir=model_dir, stdout=result.stdout,
                paths=_audio_paths(work / "audio"))


def test_train_py_trains_on_names_that_are_not_utf8_and_records_them(trained, read_json):
    metrics = read_json(trained["model_dir"], "fold1", "metrics.json")
    test_files = {os.fsencode(name) for name in metrics["data"]["test_files"]}
    assert {NOT_UTF8, PUNCTUATED, ACCENTED} <= test_files
    assert test_files <= set(trained["paths"])
    summary = read_json(trained["model_dir"], "summary.json")
    assert [os.fsencode(name) for name in summary["suspect_files"]] == [NOT_UTF8]
    # The console and summary.md name it as the file system does: its own bytes.
    suspect = f"{os.fsdecode(NOT_UTF8)}: every sample is zero"
    summary_md = (trained["model_dir"] / "summary.md").read_bytes()
    assert b"- " + os.fsencode(suspect) + b"\n" in summary_md
    assert "1 file(s) kept that look damaged" in trained["stdout"]


def test_every_output_of_predict_py_gives_back_each_name(trained):
    def predict(*flags):
        result = subprocess.run(
            [sys.executable, "predict.py", f"--model_dir={trained['model_dir']}", *flags,
             str(trained["audio"])], capture_output=True, env=ENV, cwd=ROOT, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    expected = sorted(trained["paths"].values())
    out = trained["work"] / "predictions"
    predict("--format=csv", f"--output={out}.csv")
    with open(f"{out}.csv", newline="", errors="surrogateescape") as f:
        header, *rows = csv.reader(f)
    assert sorted(row[0] for row in rows) == expected
    assert all(os.path.isfile(row[0]) for row in rows)  # each names its file
    predict("--format=json", f"--output={out}.json")
    with open(f"{out}.json", encoding="ascii") as f:  # escaped: ASCII only
        records = json.load(f)
    assert sorted(r["path"] for r in records) == expected
    table = predict("--top_k=1")
    lines = table.splitlines()
    assert lines[0].split() == [b"top", b"1", b"file"]
    bad = os.fsencode(trained["paths"][NOT_UTF8])
    assert [line for line in lines if line.endswith(b"  " + bad)], table[-2000:]


def test_evaluate_py_reports_a_run_that_holds_them(trained, run_cli, read_json):
    result = run_cli("evaluate.py", f"--model_dir={trained['model_dir']}")
    assert "Traceback" not in result.stderr
    evaluation = read_json(trained["model_dir"], "evaluation.json")
    assert evaluation["tasks"]["fold1"]["num_examples"] >= 3
    assert (trained["model_dir"] / "report.md").is_file()


def test_a_class_folder_or_audio_dir_that_is_not_utf8_is_one_line(tmp_path):
    from tfds_builders.audio_folder import builder
    from tfds_builders.audio_io import AudioDataError

    root = os.fsencode(tmp_path)
    for name in (b"cat", b"d\xf6g"):
        os.makedirs(os.path.join(root, name))
        sf.write(os.path.join(root, name, b"a.wav"), np.full(800, 0.1), 8000)
    with pytest.raises(AudioDataError) as refused:
        builder.make_config(tmp_path, sample_rate=8000, num_folds=2)
    dog = os.fsdecode(os.path.join(root, b"d\xf6g"))
    assert str(refused.value) == (
        f"class folder {dog} has a name that is not UTF-8 text "
        "(bytes \\xf6); class names are labels in every output: rename the folder")
    folder = os.path.join(root, b"recordings \xe9t\xe9")
    os.makedirs(os.path.join(folder, b"cat"))
    with pytest.raises(AudioDataError, match=r"audio_dir .* has a name that is not UTF-8 text "
                       r"\(bytes \\xe9\\xe9\); the prepared data records it: rename"):
        builder.make_config(os.fsdecode(folder), sample_rate=8000, num_folds=2)
