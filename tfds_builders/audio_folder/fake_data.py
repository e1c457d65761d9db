r"""A fake folder of recordings in the audio_folder layout, for tests and smoke runs.

`write_fake_audio_folder` writes

  <root>/<class>/<class>_<i>.<format>    the recordings, one folder per class
  <root>/<first class>/.<class>_hidden.wav   a hidden recording (ignored)
  <root>/README.txt                      a note (ignored: not audio)

A recording of class k is a tone at the class's frequency (log-spaced from
250 Hz to 3 kHz over the classes) with a random amplitude and phase, short
fades and a little noise, so a small CNN can learn it. Formats take turns over
the files, and so do the sample rates (22050, 16000, 44100, 11025 Hz), the
sample widths of each format (WAV: 16/24-bit, float, unsigned 8-bit; FLAC: 16,
24, 8-bit; OGG Vorbis; MP3) and the channel counts (mono, stereo). Output is
deterministic given `seed`.

Regenerate `dummy_data/` (the tree the DatasetBuilderTestCase reads):

  python tfds_builders/audio_folder/fake_data.py
"""

import pathlib
import shutil

import numpy as np
import soundfile as sf

RATES = (22050, 16000, 44100, 11025)
# (soundfile format, subtypes taking turns) of each file extension.
ENCODINGS = {
    "wav": ("WAV", ("PCM_16", "PCM_24", "FLOAT", "PCM_U8")),
    "flac": ("FLAC", ("PCM_16", "PCM_24", "PCM_S8")),
    "ogg": ("OGG", ("VORBIS",)),
    "mp3": ("MP3", ("MPEG_LAYER_III",)),
}
LOW_HZ, HIGH_HZ = 250.0, 3000.0
_FADE_SECONDS = 0.005


def class_frequency(index, num_classes):
    """The tone of the class at `index` of `num_classes`: log-spaced 250 Hz..3 kHz."""
    if num_classes == 1:
        return LOW_HZ
    return float(LOW_HZ * (HIGH_HZ / LOW_HZ) ** (index / (num_classes - 1)))


def tone(rng, frequency, seconds, rate, channels):
    """A noisy faded sine, shape [samples, channels], peak below 0.7."""
    t = np.arange(max(1, int(round(seconds * rate)))) / rate
    wave = rng.uniform(0.3, 0.6) * np.sin(2 * np.pi * frequency * t + rng.uniform(0, 2 * np.pi))
    fade = np.clip(np.minimum(t, t[-1] - t) / _FADE_SECONDS, 0.0, 1.0)
    wave = wave * fade
    return wave[:, None] + rng.normal(0.0, 0.01, size=(len(t), channels))


def write_fake_audio_folder(
    root,
    *,
    classes=("cat", "dog", "bird"),
    files_per_class=6,
    seconds=(0.5, 1.5),
    formats=("wav", "flac", "ogg"),
    seed=0,
):
    """Writes a folder of fake recordings, one sub-folder per class, under `root`.

    Args:
      root: the folder to write (created if missing); it becomes the audio_dir.
      classes: class (sub-folder) names, in the order that sets their tones.
      files_per_class: recordings per class.
      seconds: (shortest, longest) duration, each file's drawn uniformly; or
        one number for all.
      formats: extensions taking turns over the files: "wav", "flac", "ogg",
        "mp3" (if the installed libsndfile writes MP3).
      seed: seed of every duration, amplitude, phase and noise.

    Returns:
      `root` as a `pathlib.Path`.
    """
    unknown = [f for f in formats if f not in ENCODINGS]
    if unknown or not formats:
        raise ValueError(f"formats must be some of {', '.join(ENCODINGS)}, got {formats!r}")
    if "mp3" in formats and "MP3" not in sf.available_formats():
        raise ValueError("the installed libsndfile cannot write MP3; leave 'mp3' out of formats")
    low, high = (seconds, seconds) if np.isscalar(seconds) else seconds
    root = pathlib.Path(root)
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        frequency = class_frequency(label, len(classes))
        for index in range(files_per_class):
            rng = np.random.default_rng([seed, label, index])
            turn = label + index
            extension = formats[turn % len(formats)]
            file_format, subtypes = ENCODINGS[extension]
            rate = RATES[turn % len(RATES)]
            channels = 1 + index % 2
            signal = tone(rng, frequency, rng.uniform(low, high), rate, channels)
            sf.write(
                folder / f"{name}_{index:02d}.{extension}",
                signal,
                rate,
                subtype=subtypes[(label * files_per_class + index) // len(formats) % len(subtypes)],
                format=file_format,
            )
    first = classes[0]
    rng = np.random.default_rng([seed, len(classes), 0])  # Apart from [seed, label, index].
    hidden = tone(rng, HIGH_HZ, low, RATES[0], 1)
    sf.write(root / first / f".{first}_hidden.wav", hidden, RATES[0], subtype="PCM_16")
    (root / "README.txt").write_text(
        "Fake recordings written by tfds_builders/audio_folder/fake_data.py.\n"
    )
    return root


def write_folds_csv(root, num_folds):
    """Writes `root/folds.csv` dealing each class's files evenly over the folds.

    Classes in sorted order, each class's audio files (not hidden) in sorted
    order, dealt round-robin to folds 1, 2, ..., the count carrying on from one
    class to the next: every fold gets the same number of files of each class
    give or take one, as a test that counts clips per fold needs. (Without
    folds.csv a file's fold is a hash of its path, balanced only on average.)

    Returns:
      {relative path: fold} as written.
    """
    root = pathlib.Path(root)
    paths = sorted(
        path.relative_to(root).as_posix()
        for path in root.glob("*/**/*")
        if path.is_file() and path.suffix[1:].lower() in ENCODINGS
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )
    folds = {path: index % num_folds + 1 for index, path in enumerate(paths)}
    rows = "".join(f"{path},{fold}\n" for path, fold in folds.items())
    (root / "folds.csv").write_text("filename,fold\n" + rows)
    return folds


# What `dummy_data/` holds for the DatasetBuilderTestCase: 3 classes x 3 short files.
DUMMY_FILES_PER_CLASS = 3
DUMMY_SECONDS = (0.05, 0.1)


def write_dummy_data(dummy_dir):
    """Rewrites `dummy_dir` as a small fake folder (9 files of 50-100 ms)."""
    dummy_dir = pathlib.Path(dummy_dir)
    shutil.rmtree(dummy_dir, ignore_errors=True)
    return write_fake_audio_folder(
        dummy_dir, files_per_class=DUMMY_FILES_PER_CLASS, seconds=DUMMY_SECONDS
    )


if __name__ == "__main__":
    write_dummy_data(pathlib.Path(__file__).with_name("dummy_data"))
