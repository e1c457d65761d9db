"""Preparing datasets in a data_dir that other processes use at the same time.

Real processes prepare audio folders (`datasets.open_source`), paused inside their
preparation by a script that waits on its standard input, so the interleavings
are set by the test, not by timing.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
from unittest import mock

import numpy as np
import pytest
import soundfile as sf
import tensorflow_datasets as tfds

from keras_audio_cnn import datasets
from tfds_builders.audio_folder import builder as afb
from tfds_builders.audio_folder import fake_data as folder_fake
from tfds_builders.audio_io import AudioDataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = 8000
PAUSED = "generating examples"
# Prepares an audio folder; the first split's examples wait for a line (or the end)
# of standard input after printing PAUSED, so the test decides when it goes on.
SCRIPT = textwrap.dedent("""
    import json, sys
    from keras_audio_cnn import datasets
    from tfds_builders.audio_folder import builder as afb

    generate = afb.Builder._generate_examples

    def paused(self, files):
        print("generating examples", flush=True)
        sys.stdin.readline()
        yield from generate(self, files)

    afb.Builder._generate_examples = paused
    source = datasets.open_source("audio_folder", sys.argv[1], audio_dir=sys.argv[2],
                                  sample_rate=8000, num_folds=2)
    print(json.dumps({"data_dir": source.builder.data_dir,
                      "examples": source.builder.info.splits.total_num_examples}))
""")


def _start(data_dir, audio_dir, stdin, stdout, stderr):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=ROOT)
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(data_dir), str(audio_dir)], cwd=ROOT, env=env,
        stdin=stdin, stdout=stdout, stderr=stderr, text=True)


def _read_until(stream, wanted, process):
    """Lines of `stream` up to the first holding `wanted`; fails if the stream ends first."""
    lines = []
    for line in stream:
        lines.append(line)
        if wanted in line:
            return lines
    process.wait()
    raise AssertionError(f"no {wanted!r} before the process ended ({process.returncode}):\n"
                         + "".join(lines)[-3000:])


def _folder(path, classes=("a", "b"), files_per_class=3):
    return folder_fake.write_fake_audio_folder(path, classes=classes,
                                               files_per_class=files_per_class, seconds=0.1,
                                               formats=("wav",))


def _leftovers(data_dir):
    """Lock files and TFDS temporaries anywhere under `data_dir`."""
    return sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*")
                  if p.name.endswith(".lock") or p.name.startswith("incomplete."))


def test_two_processes_preparing_one_folder_both_succeed_one_prepares(tmp_path):
    audio_dir, data_dir = _folder(tmp_path / "audio"), tmp_path / "tfds"
    second_out = tmp_path / "second.out"
    first = _start(data_dir, audio_dir, subprocess.PIPE, subprocess.PIPE, subprocess.DEVNULL)
    second = None
    try:
        _read_until(first.stdout, PAUSED, first)  # It holds the lock, mid-preparation.
        # The second never pauses: on its own it would prepare a copy at once.
        with open(second_out, "w") as out:
            second = _start(data_dir, audio_dir, subprocess.DEVNULL, out, subprocess.PIPE)
        waited = _read_until(second.stderr, "is being prepared by another process", second)
        first.stdin.close()  # The first one goes on, finishes and lets go.
        first_out = first.stdout.read()
        second_err = "".join(waited) + second.stderr.read()
        first.wait(timeout=600)
        second.wait(timeout=600)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
    second_out = second_out.read_text()
    assert first.returncode == 0 and second.returncode == 0, second_err[-3000:]
    assert PAUSED not in second_out  # It reused the data: never generated an example.
    results = [json.loads(out.strip().splitlines()[-1]) for out in (first_out, second_out)]
    assert results[0] == results[1] and results[0]["examples"] == 6
    assert "FileExistsError" not in second_err and "Traceback" not in second_err
    config_dir = os.path.dirname(results[0]["data_dir"])
    assert os.listdir(config_dir) == ["1.0.0"]  # No copy, lock or temporary left.


def test_a_failed_preparation_leaves_another_datasets_concurrent_preparation_intact(tmp_path):
    # The failing folder has a FLAC file cut short: its header reads, its frames do not.
    failing = _folder(tmp_path / "failing")
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 8000)  # Barely compressible.
    sf.write(tmp_path / "whole.flac", noise, RATE, subtype="PCM_16")
    whole = (tmp_path / "whole.flac").read_bytes()
    (failing / "b" / "cut.flac").write_bytes(whole[: len(whole) // 2])
    other = _folder(tmp_path / "other", classes=("c", "d", "e"))
    data_dir = tmp_path / "tfds"  # Created by the failing call, then used by the other.
    generate = afb.Builder._generate_examples
    others = []

    def meanwhile(self, files):
        if not others:  # While this preparation runs: another dataset's, to its end.
            others.append(subprocess.run(
                [sys.executable, "-c", SCRIPT, str(data_dir), str(other)], cwd=ROOT,
                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT),
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600))
        yield from generate(self, files)

    with mock.patch.object(afb.Builder, "_generate_examples", meanwhile), \
            pytest.raises(AudioDataError, match=f"cannot decode audio file {failing}/b/cut.flac"):
        datasets.open_source("audio_folder", str(data_dir), audio_dir=str(failing),
                             sample_rate=RATE, num_folds=2)
    assert others[0].returncode == 0, others[0].stderr[-3000:]
    prepared = json.loads(others[0].stdout.strip().splitlines()[-1])
    reread = tfds.builder_from_directory(prepared["data_dir"])
    assert reread.info.splits.total_num_examples == prepared["examples"] == 9
    assert len(list(tfds.as_numpy(reread.as_dataset(split="fold1+fold2")))) == 9
    # Of the failed preparation nothing is left: its config folder, lock and
    # temporaries are gone, and data_dir stays for the other dataset.
    failing_name = afb.make_config(failing, sample_rate=RATE, num_folds=2).name
    assert sorted(os.listdir(data_dir / "audio_folder")) == [
        os.path.basename(os.path.dirname(prepared["data_dir"]))]
    assert failing_name not in os.listdir(data_dir / "audio_folder")
    assert _leftovers(data_dir) == []


def test_a_failed_preparation_in_a_new_data_dir_removes_it(tmp_path):
    audio_dir = _folder(tmp_path / "audio")
    (audio_dir / "a" / "a_00.wav").write_bytes((audio_dir / "a" / "a_00.wav").read_bytes()[:40])
    with pytest.raises(AudioDataError, match="a_00.wav"):  # A header without frames.
        datasets.open_source("audio_folder", str(tmp_path / "new" / "tfds"),
                             audio_dir=str(audio_dir),
                             sample_rate=RATE, num_folds=2)
    assert not (tmp_path / "new").exists()


def test_killed_preparations_leave_copies_the_next_one_removes_not_other_datasets(tmp_path):
    audio_dir, data_dir = _folder(tmp_path / "audio"), tmp_path / "tfds"
    config_name = afb.make_config(audio_dir, sample_rate=RATE, num_folds=2).name
    config_dir = data_dir / "audio_folder" / config_name
    # A preparation killed while it writes (it holds the lock: the kernel lets go).
    killed = _start(data_dir, audio_dir, subprocess.PIPE, subprocess.PIPE, subprocess.DEVNULL)
    _read_until(killed.stdout, PAUSED, killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    left = [p.name for p in config_dir.iterdir()]
    assert len([n for n in left if n.startswith("incomplete.")]) == 1 and "1.0.0.lock" in left
    # One planted as if from an earlier kill, and those of other datasets: another
    # folder's config, another version of this config, and ESC-50.
    planted = [config_dir / "incomplete.ABC123_1.0.0",
               data_dir / "audio_folder" / "other-0123456789ab" / "incomplete.XYZ789_1.0.0",
               config_dir / "incomplete.QWE456_0.9.0",
               data_dir / "esc50" / "incomplete.RTY012_1.0.0"]
    for folder in planted:
        folder.mkdir(parents=True)
        (folder / "audio_folder-fold1.tfrecord-00000-of-00001").write_bytes(b"partial")

    source = datasets.open_source("audio_folder", str(data_dir), audio_dir=str(audio_dir),
                                  sample_rate=RATE, num_folds=2)
    assert source.builder.info.splits.total_num_examples == 6
    assert sorted(p.name for p in config_dir.iterdir()) == ["1.0.0", "incomplete.QWE456_0.9.0"]
    assert all(folder.is_dir() for folder in planted[1:])

    # Prepared data with a killed copy beside it: the copy goes at the next opening too.
    planted[0].mkdir()
    again = datasets.open_source("audio_folder", str(data_dir), audio_dir=str(audio_dir),
                                 sample_rate=RATE, num_folds=2)
    assert again.builder.data_dir == source.builder.data_dir
    assert not planted[0].exists() and planted[2].exists()


def test_a_config_of_esc50_prepared_beside_its_data_from_before_configs_leaves_that_data(
        tmp_path):
    # ESC-50 1.0.0 had no config: its data is <data_dir>/esc50/1.0.0/, the folder that
    # holds the configs' folders now. Preparing one of them, failing or not, leaves it.
    from tfds_builders.esc50 import fake_data as esc50_fake

    data_dir = tmp_path / "tfds"
    legacy = data_dir / "esc50" / "1.0.0"
    legacy.mkdir(parents=True)
    (legacy / "dataset_info.json").write_text("{}")
    (legacy / "esc50-fold1.tfrecord-00000-of-00001").write_bytes(b"prepared by 1.0.0")
    before = sorted(p.name for p in legacy.iterdir())
    top = esc50_fake.write_fake_esc50(tmp_path / "manual", classes=(0, 1), seconds=0.01)
    corrupt = sorted((top / "audio").iterdir())[0]
    intact = corrupt.read_bytes()
    corrupt.write_bytes(b"not audio")
    with pytest.raises(AudioDataError, match=f"cannot decode audio file {corrupt}"):
        datasets.open_source("esc50", str(data_dir), str(tmp_path / "manual"), sample_rate=32000)
    assert sorted(p.name for p in legacy.iterdir()) == before
    assert "32000hz" not in os.listdir(data_dir / "esc50") and _leftovers(data_dir) == []

    corrupt.write_bytes(intact)
    source = datasets.open_source("esc50", str(data_dir), str(tmp_path / "manual"),
                                  sample_rate=32000)
    assert os.fspath(source.builder.data_dir) == str(data_dir / "esc50" / "32000hz" / "1.1.0")
    assert source.builder.info.splits.total_num_examples == 10
    assert sorted(p.name for p in legacy.iterdir()) == before
    assert (legacy / "esc50-fold1.tfrecord-00000-of-00001").read_bytes() == b"prepared by 1.0.0"
