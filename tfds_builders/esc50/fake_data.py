r"""Fake ESC-50 data in the real layout, for tests and smoke runs.

`write_fake_esc50` writes what the ESC-50 GitHub archive holds:

  ESC-50-master/meta/esc50.csv     filename,fold,target,category,esc10,src_file,take
  ESC-50-master/audio/{fold}-{src_file}-{take}-{target}.wav

either as that folder or zipped as `ESC-50-master.zip`. The audio of class t is a
sine at a class frequency (mel-spaced from 100 Hz to 15 kHz over the 50 classes)
with a random amplitude, phase and a little noise, so a small CNN can learn it.
A few files use other encodings (stereo, 32-bit float, 22050 Hz) to exercise
decoding; the rest are 16-bit mono at 44.1 kHz. Output is deterministic given
`seed`, and a clip's audio does not depend on which other classes are written.

Regenerate `dummy_data/`:

  python tfds_builders/esc50/fake_data.py
"""

import csv
import io
import pathlib
import shutil
import zipfile

import numpy as np

from tfds_builders import fake_audio

ARCHIVE_TOP = "ESC-50-master"
NUM_CLASSES = 50
NUM_FOLDS = 5
LABELS_PATH = pathlib.Path(__file__).with_name("labels.txt")
# Classes of the ESC-10 subset (dog, rooster, rain, sea_waves, crackling_fire,
# crying_baby, sneezing, clock_tick, helicopter, chainsaw).
ESC10_TARGETS = frozenset({0, 1, 10, 11, 12, 20, 21, 38, 40, 41})
CSV_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
_LOW_RATE = 22050
# A fixed timestamp keeps the zip byte-identical between runs.
_ZIP_DATE = (2017, 12, 13, 0, 0, 0)


def class_frequency(target):
    """The tone of class `target`: mel-spaced between 100 Hz and 15 kHz."""

    def to_mel(hz):
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    mel = np.linspace(to_mel(100.0), to_mel(15000.0), NUM_CLASSES)[target]
    return float(700.0 * (10.0 ** (mel / 2595.0) - 1.0))


def _tone(rng, target, seconds, rate, channels):
    t = np.arange(int(round(seconds * rate))) / rate
    amplitude = rng.uniform(0.3, 0.6)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    tone = amplitude * np.sin(2.0 * np.pi * class_frequency(target) * t + phase)
    noise = rng.normal(0.0, 0.01, size=(len(t), channels))
    return tone[:, None] + noise


def _wav_bytes(signal, rate, subtype):
    return fake_audio.audio_bytes(signal, rate, subtype)


def write_fake_esc50(
    root,
    *,
    clips_per_fold_per_class=1,
    classes=range(NUM_CLASSES),
    seconds=0.05,
    sample_rate=44100,
    as_zip=False,
    seed=0,
):
    """Writes a fake ESC-50 under `root` in the layout of the GitHub archive.

    Args:
      root: folder to write into (created if missing).
      clips_per_fold_per_class: clips of each class in each of the 5 folds; the
        clips of one class in one fold are takes A, B, ... of one source file.
      classes: the targets (0..49) to write; names come from `labels.txt`.
      seconds: length of each clip (the builder pads clips to 5 s).
      sample_rate: rate of the ordinary files; one file is written at 22050 Hz.
      as_zip: write `root/ESC-50-master.zip` instead of the folder.
      seed: seed of every random amplitude, phase and noise.

    Returns:
      The path of `root/ESC-50-master` or of `root/ESC-50-master.zip`.
    """
    names = LABELS_PATH.read_text().split()
    classes = sorted(set(int(t) for t in classes))
    if not classes or classes[0] < 0 or classes[-1] >= NUM_CLASSES:
        raise ValueError(f"classes must be a non-empty subset of 0..{NUM_CLASSES - 1}")
    if not 1 <= clips_per_fold_per_class <= 26:
        raise ValueError("clips_per_fold_per_class must be in 1..26 (takes A..Z)")

    clips = [
        (fold, target, take)
        for fold in range(1, NUM_FOLDS + 1)
        for target in classes
        for take in range(clips_per_fold_per_class)
    ]
    # Which clips use an unusual encoding: the 2nd is stereo, the 3rd 32-bit float,
    # and the first later one whose tone stays below the 22050 Hz Nyquist limit is
    # written at 22050 Hz. All others are 16-bit mono.
    encodings = {1: "stereo", 2: "float"}
    for index in range(3, len(clips)):
        if class_frequency(clips[index][1]) < 0.4 * _LOW_RATE:
            encodings[index] = "low_rate"
            break

    files = {}
    rows = []
    for index, (fold, target, take) in enumerate(clips):
        rng = np.random.default_rng([seed, fold, target, take])
        src_file = str(100000 + 100 * target + fold)
        take_letter = chr(ord("A") + take)
        filename = f"{fold}-{src_file}-{take_letter}-{target}.wav"
        encoding = encodings.get(index, "pcm16")
        rate = _LOW_RATE if encoding == "low_rate" else sample_rate
        channels = 2 if encoding == "stereo" else 1
        signal = _tone(rng, target, seconds, rate, channels)
        subtype = "FLOAT" if encoding == "float" else "PCM_16"
        files[f"audio/{filename}"] = _wav_bytes(signal, rate, subtype)
        rows.append(
            {
                "filename": filename,
                "fold": fold,
                "target": target,
                "category": names[target],
                "esc10": target in ESC10_TARGETS,
                "src_file": src_file,
                "take": take_letter,
            }
        )

    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda row: row["filename"]))
    files["meta/esc50.csv"] = table.getvalue().encode()

    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if as_zip:
        return _write_zip(root / f"{ARCHIVE_TOP}.zip", files)
    return fake_audio.write_tree(root / ARCHIVE_TOP, files)


def _write_zip(path, files):
    """Zips `files` under the top folder `ESC-50-master/`, as GitHub serves it."""
    with zipfile.ZipFile(path, "w") as archive:
        for folder in ("", "audio/", "meta/"):
            entry = zipfile.ZipInfo(f"{ARCHIVE_TOP}/{folder}", date_time=_ZIP_DATE)
            entry.external_attr = (0o40755 << 16) | 0x10
            archive.writestr(entry, b"")
        for relative in sorted(files):
            entry = zipfile.ZipInfo(f"{ARCHIVE_TOP}/{relative}", date_time=_ZIP_DATE)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o100644 << 16
            archive.writestr(entry, files[relative])
    return path


# What `dummy_data/` holds for the builder tests: 3 classes x 5 folds, 10 ms clips.
DUMMY_CLASSES = (0, 25, 49)
DUMMY_SECONDS = 0.01


def write_dummy_data(dummy_dir):
    """Writes the two manual layouts the builder tests read.

    dummy_data/manual_zip/ESC-50-master.zip       the archive as GitHub serves it
    dummy_data/manual_folder/ESC-50-master/...    the same, extracted
    """
    dummy_dir = pathlib.Path(dummy_dir)
    for layout, as_zip in (("manual_zip", True), ("manual_folder", False)):
        shutil.rmtree(dummy_dir / layout, ignore_errors=True)
        write_fake_esc50(
            dummy_dir / layout,
            classes=DUMMY_CLASSES,
            seconds=DUMMY_SECONDS,
            as_zip=as_zip,
        )


if __name__ == "__main__":
    write_dummy_data(pathlib.Path(__file__).with_name("dummy_data"))
