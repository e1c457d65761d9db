r"""Fake GTZAN data in the real layouts, for tests and smoke runs.

`write_fake_gtzan` writes either layout the builder reads:

  genres/<genre>/<genre>.NNNNN.au             the original archive (16-bit AU),
                                              as that folder or as genres.tar.gz
  genres_original/<genre>/<genre>.NNNNN.wav   the widely shared copy (16-bit WAV)

all mono at 22050 Hz. The audio of a genre is a tone at a genre frequency
(mel-spaced from 150 Hz to 6 kHz over the 10 genres) with its octave, a random
amplitude and phase and a little noise, so a small CNN can learn it. A corrupt
file is garbage bytes under a clip's name, like `jazz.00054.wav` in the shared
copy. Output is deterministic given `seed`, and a clip's audio does not depend
on which other clips are written.

Regenerate `dummy_data/`:

  python tfds_builders/gtzan/fake_data.py
"""

import io
import pathlib
import re
import shutil

import numpy as np
import soundfile as sf

from tfds_builders import fake_audio

LABELS_PATH = pathlib.Path(__file__).with_name("labels.txt")
GENRES = tuple(LABELS_PATH.read_text().split())
SAMPLE_RATE = 22050
LAYOUTS = {"genres": ("AU", "au"), "genres_original": ("WAV", "wav")}
_ID = re.compile(r"([a-z]+)\.(\d{5})")
# A fixed timestamp keeps the archive byte-identical between runs.
_MTIME = 1_000_000_000  # 2001-09-09, about when GTZAN was made.


def genre_frequency(genre):
    """The tone of `genre`: mel-spaced between 150 Hz and 6 kHz in label order."""

    def to_mel(hz):
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    mel = np.linspace(to_mel(150.0), to_mel(6000.0), len(GENRES))[GENRES.index(genre)]
    return float(700.0 * (10.0 ** (mel / 2595.0) - 1.0))


def _clip(rng, genre, seconds):
    t = np.arange(int(round(seconds * SAMPLE_RATE))) / SAMPLE_RATE
    amplitude = rng.uniform(0.2, 0.4)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    angle = 2.0 * np.pi * genre_frequency(genre) * t + phase
    tone = amplitude * (np.sin(angle) + 0.5 * np.sin(2.0 * angle))
    return tone + rng.normal(0.0, 0.01, size=len(t))


def _audio_bytes(signal, file_format):
    buffer = io.BytesIO()
    sf.write(buffer, signal, SAMPLE_RATE, subtype="PCM_16", format=file_format)
    return buffer.getvalue()


def _garbage(rng):
    """Bytes no audio library reads: a text line and random noise."""
    return b"corrupt GTZAN clip\n" + rng.integers(0, 256, 512, dtype=np.uint8).tobytes()


def write_fake_gtzan(
    root,
    *,
    clips_per_genre=10,
    genres=GENRES,
    seconds=0.05,
    layout="genres",
    as_tar=False,
    corrupt=(),
    ids=None,
    seed=0,
):
    """Writes a fake GTZAN under `root` in one of the real layouts.

    Args:
      root: folder to write into (created if missing).
      clips_per_genre: clips `<genre>.00000` ... of each genre in `genres`.
      genres: the genres to write (names from `labels.txt`).
      seconds: length of each clip (the builder pads clips to 30 s).
      layout: "genres" (`.au` files, as in genres.tar.gz) or "genres_original"
        (`.wav` files, as in the shared copy).
      as_tar: write `root/genres.tar.gz` instead of the folder (layout "genres").
      corrupt: ids (`genre.NNNNN`) written as garbage bytes, added to the others.
      ids: if given, exactly these ids are written (with `corrupt`), instead of
        `clips_per_genre` of each of `genres`; e.g. the fault-filtered ids.
      seed: seed of every random amplitude, phase and noise.

    Returns:
      The path of `root/genres`, `root/genres_original` or `root/genres.tar.gz`.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if as_tar and layout != "genres":
        raise ValueError("as_tar=True writes genres.tar.gz, which has layout 'genres'")
    if ids is None:
        unknown = sorted(set(genres) - set(GENRES))
        if unknown:
            raise ValueError(f"unknown genres {unknown}; choose from {GENRES}")
        ids = [f"{genre}.{n:05d}" for genre in genres for n in range(clips_per_genre)]
    for clip_id in [*ids, *corrupt]:
        match = _ID.fullmatch(clip_id)
        if not match or match[1] not in GENRES:
            raise ValueError(f"{clip_id!r} is not an id genre.NNNNN of a GTZAN genre")

    file_format, extension = LAYOUTS[layout]
    files = {}
    for clip_id in sorted(set(ids) | set(corrupt)):
        genre, number = clip_id.split(".")
        rng = np.random.default_rng([seed, GENRES.index(genre), int(number)])
        if clip_id in corrupt:
            content = _garbage(rng)
        else:
            content = _audio_bytes(_clip(rng, genre, seconds), file_format)
        files[f"{genre}/{clip_id}.{extension}"] = content

    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if as_tar:
        return fake_audio.write_tar_gz(root / "genres.tar.gz", "genres", files, _MTIME)
    return fake_audio.write_tree(root / layout, files)


# What `dummy_data/` holds for the builder tests: two ids of every genre, each in
# a fault-filtered list (genre k: the first of list k % 3 and of list (k + 1) % 3,
# lists train, valid, test), so both configs get every split. 10 ms clips.
DUMMY_IDS = (
    "blues.00029", "blues.00000",  # train, valid
    "classical.00000", "classical.00011",  # valid, test
    "country.00030", "country.00019",  # test, train
    "disco.00005", "disco.00000",  # train, valid
    "hiphop.00081", "hiphop.00000",  # valid, test
    "jazz.00073", "jazz.00000",  # test, train
    "metal.00002", "metal.00000",  # train, valid
    "pop.00010", "pop.00000",  # valid, test
    "reggae.00034", "reggae.00000",  # test, train
    "rock.00000", "rock.00038",  # train, valid
)
# The shared copy's undecodable file, written into dummy_data's genres_original/.
DUMMY_CORRUPT = ("jazz.00054",)
DUMMY_SECONDS = 0.01


def write_dummy_data(dummy_dir):
    """Writes the two manual layouts the builder tests read.

    dummy_data/manual_tar/genres.tar.gz    the original archive (genres/<genre>/*.au)
    dummy_data/manual_genres_original/genres_original/<genre>/*.wav
                                           the shared copy, with a corrupt jazz.00054.wav
    """
    dummy_dir = pathlib.Path(dummy_dir)
    layouts = {
        "manual_tar": dict(layout="genres", as_tar=True),
        "manual_genres_original": dict(layout="genres_original", corrupt=DUMMY_CORRUPT),
    }
    for folder, options in layouts.items():
        shutil.rmtree(dummy_dir / folder, ignore_errors=True)
        write_fake_gtzan(dummy_dir / folder, ids=DUMMY_IDS, seconds=DUMMY_SECONDS, **options)


if __name__ == "__main__":
    write_dummy_data(pathlib.Path(__file__).with_name("dummy_data"))
