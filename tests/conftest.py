"""What the test modules share: tiny-run flags, generated sounds and tones, the CLIs.

Test modules never import each other; they ask for these fixtures by name.
"""

import json
import os
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
import soundfile as sf

from tfds_builders.audio_folder import fake_data as folder_fake

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The smallest training that still runs every step of train.py: a MobileNetV3Small
# from random weights, one epoch of batches of 8.
TINY_MODEL = ["--backbone=MobileNetV3Small", "--weights=none", "--epochs=1", "--batch_size=8",
              "--verbose=2"]
# A generated audio folder at 8 kHz, cut into 0.5 s clips.
TINY_FOLDER = ["--dataset=audio_folder", "--sample_rate=8000", "--clip_seconds=0.5"]


def _run_cli(script, *flags, check=True):
    # The environment as it is now: a Ray cluster started by a test sets what its
    # clients need (its auth token) in this process's environment.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *flags],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=900,
        errors="surrogateescape",  # a file name that is not UTF-8 reads as os.fsdecode's
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def _read_json(*parts):
    with open(os.path.join(*parts)) as f:
        return json.load(f)


def _assert_one_line_error(result, program, *fragments):
    assert result.returncode != 0
    # TensorFlow's own start-up log lines may come first; ours is one line, last.
    lines = [line for line in result.stderr.splitlines() if line.startswith(program)]
    assert len(lines) == 1, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == lines[0]
    assert lines[0].startswith(f"{program}: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def _tone(frequency, sample_rate=44100, num_samples=220500, amplitude=0.5, start=0.0):
    """A float32 sine of `frequency` Hz, silent before `start` seconds."""
    t = np.arange(num_samples) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t) * (t >= start)).astype("float32")


def _prepare_fake_spoken_digit(root, data_dir):
    """Prepares the real TFDS catalog builder `spoken_digit` from fake recordings."""
    import tensorflow_datasets as tfds

    from keras_audio_cnn import datasets

    recordings = root / "free-spoken-digit-dataset-1.0.9" / "recordings"
    recordings.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for digit in range(10):
        for take in range(5):  # files named {digit}_{speaker}_{index}.wav, 8 kHz
            n = int(rng.integers(2000, 6000))
            t = np.arange(n) / 8000
            sf.write(recordings / f"{digit}_jackson_{take}.wav",
                     0.4 * np.sin(2 * np.pi * (300 + 150 * digit) * t), 8000, subtype="PCM_16")
    with mock.patch.object(tfds.download.DownloadManager, "download_and_extract",
                           return_value=str(root)):
        return datasets.open_source("tfds:spoken_digit", str(data_dir))


@pytest.fixture(scope="session")
def run_cli():
    """`run_cli(script, *flags, check=True)`: runs a top-level script as a user does, in a
    fresh process without GPUs; with `check`, a non-zero exit fails the test."""
    return _run_cli


@pytest.fixture(scope="session")
def read_json():
    """`read_json(*path_parts)`: a JSON file's content."""
    return _read_json


@pytest.fixture(scope="session")
def assert_one_line_error():
    """`assert_one_line_error(result, program, *fragments)`: the run failed with one line
    `<program>: error: ...` holding every fragment, and no traceback."""
    return _assert_one_line_error


@pytest.fixture(scope="session")
def tone():
    """`tone(frequency, sample_rate=44100, num_samples=220500, amplitude=0.5, start=0.0)`."""
    return _tone


@pytest.fixture(scope="session")
def tiny_model():
    """Flags of the smallest model train.py can train (see TINY_MODEL)."""
    return list(TINY_MODEL)


@pytest.fixture(scope="module")
def make_sounds(tmp_path_factory):
    """`make_sounds(classes=("bird", "cat", "dog"), files_per_class=6, num_folds=None)`: a
    generated audio folder of 0.4-0.5 s tones (`<work>/audio/<class>/...`); returns
    `<work>`, a fresh directory for the run's data and models too.

    With `num_folds`, a folds.csv deals each class evenly over the folds, for tests
    that count clips per fold (without it, each file's fold is a hash of its path,
    balanced only on average).
    """

    def make(classes=("bird", "cat", "dog"), files_per_class=6, num_folds=None):
        work = tmp_path_factory.mktemp("sounds")
        folder_fake.write_fake_audio_folder(work / "audio", classes=classes,
                                            files_per_class=files_per_class,
                                            seconds=(0.4, 0.5))
        if num_folds:
            folder_fake.write_folds_csv(work / "audio", num_folds)
        return work

    return make


@pytest.fixture(scope="module")
def sounds(make_sounds):
    """The default generated folder: 3 classes x 6 files, 2 of each class in each of 3
    folds (see `make_sounds`)."""
    return make_sounds(num_folds=3)


@pytest.fixture(scope="session")
def folder_flags():
    """`folder_flags(work, num_folds=3, data_dir=None)`: train.py flags for the tiny folder
    of `make_sounds` (0.5 s clips at 8 kHz), prepared in `data_dir` (default `<work>/tfds`)."""

    def flags(work, num_folds=3, data_dir=None):
        return [*TINY_FOLDER, f"--num_folds={num_folds}", f"--audio_dir={work / 'audio'}",
                f"--data_dir={data_dir or work / 'tfds'}"]

    return flags


@pytest.fixture(scope="session")
def prepare_fake_spoken_digit():
    """`prepare_fake_spoken_digit(root, data_dir)`: the TFDS catalog's spoken_digit,
    prepared from generated recordings with its download mocked; returns its Source."""
    return _prepare_fake_spoken_digit
