r"""Fake UrbanSound8K data in the real layout, for tests and smoke runs.

`write_fake_urbansound8k` writes what the Zenodo archive UrbanSound8K.tar.gz holds:

  UrbanSound8K/metadata/UrbanSound8K.csv
      slice_file_name,fsID,start,end,salience,fold,classID,class
  UrbanSound8K/audio/fold{fold}/{fsID}-{classID}-{occurrenceID}-{sliceID}.wav

either as that folder or as `UrbanSound8K.tar.gz`. The audio of class c is a sine
at a class frequency (mel-spaced from 150 Hz to 3.4 kHz, below the Nyquist limit
of the 8 kHz files) with a random amplitude, phase and a little noise, so a small
CNN can learn it. As in the real data, the clips of one fold come from a few
source recordings: classes 2k and 2k+1 of a fold are occurrences in one
recording (one fsID), and the clips of one class are slices of its occurrences.
No recording spans two folds.

The real files keep the format of the Freesound uploads they were cut from, so
the fake ones cycle through `ENCODINGS`: 8-bit unsigned, 16, 24 and 32-bit PCM,
32-bit float, WAVE_FORMAT_EXTENSIBLE headers, mono and stereo, 8 kHz to 192 kHz.
Output is deterministic given `seed` (libsndfile's timestamp in the PEAK chunk
of float files is zeroed), and a clip's bytes do not depend on which other
classes or folds are written.

Regenerate `dummy_data/`:

  python tfds_builders/urbansound8k/fake_data.py
"""

import csv
import io
import pathlib
import shutil
import typing

import numpy as np

from tfds_builders import fake_audio

ARCHIVE_TOP = "UrbanSound8K"
ARCHIVE_NAME = "UrbanSound8K.tar.gz"
CSV_NAME = "metadata/UrbanSound8K.csv"
CSV_COLUMNS = ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class")
NUM_CLASSES = 10
NUM_FOLDS = 10
LABELS_PATH = pathlib.Path(__file__).with_name("labels.txt")
# A fixed timestamp (the Zenodo record's date) keeps the archive byte-identical.
_TAR_MTIME = 1522108800
_SLICES_PER_OCCURRENCE = 4


class Encoding(typing.NamedTuple):
    """How one fake file is stored: a libsndfile container, subtype, channels and rate."""

    name: str
    container: str  # "WAV" (plain header) or "WAVEX" (WAVE_FORMAT_EXTENSIBLE).
    subtype: str
    channels: int
    rate: int


# Every format variant of the real files; a clip's variant is a function of
# its fold, class and index (see `_encoding_of`).
ENCODINGS = (
    Encoding("pcm16_mono_44100", "WAV", "PCM_16", 1, 44100),
    Encoding("pcm24_stereo_48000", "WAV", "PCM_24", 2, 48000),
    Encoding("u8_mono_8000", "WAV", "PCM_U8", 1, 8000),
    Encoding("float32_mono_96000", "WAV", "FLOAT", 1, 96000),
    Encoding("pcm32_mono_16000", "WAV", "PCM_32", 1, 16000),
    Encoding("extensible_pcm24_stereo_44100", "WAVEX", "PCM_24", 2, 44100),
    Encoding("pcm16_stereo_22050", "WAV", "PCM_16", 2, 22050),
    Encoding("u8_stereo_11025", "WAV", "PCM_U8", 2, 11025),
    Encoding("float32_stereo_24000", "WAV", "FLOAT", 2, 24000),
    Encoding("extensible_float32_mono_32000", "WAVEX", "FLOAT", 1, 32000),
    Encoding("pcm16_mono_192000", "WAV", "PCM_16", 1, 192000),
)


def class_frequency(class_id):
    """The tone of class `class_id`: mel-spaced between 150 Hz and 3.4 kHz."""

    def to_mel(hz):
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    mel = np.linspace(to_mel(150.0), to_mel(3400.0), NUM_CLASSES)[class_id]
    return float(700.0 * (10.0 ** (mel / 2595.0) - 1.0))


def fs_id(fold, class_id):
    """The Freesound id of the fake recording holding class `class_id` in `fold`."""
    return 100000 + 100 * fold + class_id // 2


def _encoding_of(fold, class_id, clip):
    # len(ENCODINGS) is prime and 7 is invertible modulo it, so the 10 folds of
    # one class already take 10 different encodings.
    return ENCODINGS[(7 * fold + 3 * class_id + clip) % len(ENCODINGS)]


def _tone(rng, class_id, seconds, rate, channels):
    t = np.arange(int(round(seconds * rate))) / rate
    amplitude = rng.uniform(0.3, 0.6)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    tone = amplitude * np.sin(2.0 * np.pi * class_frequency(class_id) * t + phase)
    noise = rng.normal(0.0, 0.01, size=(len(t), channels))
    return tone[:, None] + noise


def _wav_bytes(signal, encoding):
    return fake_audio.audio_bytes(signal, encoding.rate, encoding.subtype, encoding.container)


def write_fake_urbansound8k(
    root,
    *,
    clips_per_fold_per_class=1,
    classes=range(NUM_CLASSES),
    folds=range(1, NUM_FOLDS + 1),
    seconds=0.05,
    as_tar=False,
    seed=0,
):
    """Writes a fake UrbanSound8K under `root` in the layout of the Zenodo archive.

    Args:
      root: folder to write into (created if missing).
      clips_per_fold_per_class: clips of each class in each fold; they are
        slices of the occurrences of that class in the fold's recording.
      classes: the classIDs (0..9) to write; names come from `labels.txt`.
      folds: the folds (1..10) to write.
      seconds: length of each clip (the builder pads clips to 4 s).
      as_tar: write `root/UrbanSound8K.tar.gz` instead of the folder.
      seed: seed of every random amplitude, phase and noise.

    Returns:
      The path of `root/UrbanSound8K` or of `root/UrbanSound8K.tar.gz`.
    """
    names = LABELS_PATH.read_text().split()
    classes = sorted(set(int(c) for c in classes))
    folds = sorted(set(int(f) for f in folds))
    if not classes or classes[0] < 0 or classes[-1] >= NUM_CLASSES:
        raise ValueError(f"classes must be a non-empty subset of 0..{NUM_CLASSES - 1}")
    if not folds or folds[0] < 1 or folds[-1] > NUM_FOLDS:
        raise ValueError(f"folds must be a non-empty subset of 1..{NUM_FOLDS}")
    if clips_per_fold_per_class < 1:
        raise ValueError("clips_per_fold_per_class must be at least 1")

    files = {}
    rows = []
    for fold in folds:
        for class_id in classes:
            for clip in range(clips_per_fold_per_class):
                occurrence, slice_id = divmod(clip, _SLICES_PER_OCCURRENCE)
                recording = fs_id(fold, class_id)
                filename = f"{recording}-{class_id}-{occurrence}-{slice_id}.wav"
                encoding = _encoding_of(fold, class_id, clip)
                rng = np.random.default_rng([seed, fold, class_id, clip])
                signal = _tone(rng, class_id, seconds, encoding.rate, encoding.channels)
                files[f"audio/fold{fold}/{filename}"] = _wav_bytes(signal, encoding)
                # Slices are 4 s windows of an occurrence; the two classes sharing
                # a recording sit in different minutes of it.
                start = 60.0 * (class_id % 2) + 20.0 * occurrence + 4.0 * slice_id
                rows.append(
                    {
                        "slice_file_name": filename,
                        "fsID": recording,
                        "start": round(start, 6),
                        "end": round(start + seconds, 6),
                        "salience": 1 + (fold + class_id + clip) % 2,
                        "fold": fold,
                        "classID": class_id,
                        "class": names[class_id],
                    }
                )
    if 1 in folds:
        # Not listed in the CSV and to be ignored, like any stray file.
        files["audio/fold1/.DS_Store"] = b"\x00\x00\x00\x01Bud1" + bytes(8)

    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda row: row["slice_file_name"]))
    files[CSV_NAME] = table.getvalue().encode()

    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if as_tar:
        return write_tar_gz(root / ARCHIVE_NAME, files)
    return fake_audio.write_tree(root / ARCHIVE_TOP, files)


def write_tar_gz(path, files):
    """Writes `files` ({relative path: bytes}) as a .tar.gz under `UrbanSound8K/`."""
    return fake_audio.write_tar_gz(path, ARCHIVE_TOP, files, _TAR_MTIME)


# What `dummy_data/` holds for the builder tests: classes 2 and 3 (which share a
# recording in each fold) x 10 folds, 10 ms clips; the 20 files take all 11 ENCODINGS.
DUMMY_CLASSES = (2, 3)
DUMMY_SECONDS = 0.01


def write_dummy_data(dummy_dir):
    """Writes the two manual layouts the builder tests read.

    dummy_data/manual_tar/UrbanSound8K.tar.gz       the archive as Zenodo serves it
    dummy_data/manual_folder/UrbanSound8K/...       the same, extracted
    """
    dummy_dir = pathlib.Path(dummy_dir)
    for layout, as_tar in (("manual_tar", True), ("manual_folder", False)):
        shutil.rmtree(dummy_dir / layout, ignore_errors=True)
        write_fake_urbansound8k(
            dummy_dir / layout,
            classes=DUMMY_CLASSES,
            seconds=DUMMY_SECONDS,
            as_tar=as_tar,
        )


if __name__ == "__main__":
    write_dummy_data(pathlib.Path(__file__).with_name("dummy_data"))
