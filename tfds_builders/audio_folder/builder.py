"""audio_folder: the user's own recordings, one sub-folder per class, in folds.

A dataset made from a folder rather than a download, so it has no fixed
BuilderConfig: `make_builder(audio_dir, ...)` scans the folder and returns a
`Builder` with an `AudioFolderConfig` made for it, whose name is a hash of the
folder's content and the options. TFDS stores each config under its own
directory, `<data_dir>/audio_folder/<config name>/<version>/`, so an unchanged
folder prepared again with the same options reuses its data, and a changed one
is prepared anew. Like TFDS's own `ImageFolder` it is not in the TFDS catalog:
`tfds.builder("audio_folder")` does not know it.

    builder = make_builder("~/recordings", sample_rate=22050, num_folds=5)
    builder.download_and_prepare()
    builder.as_dataset(split="fold2+fold3+fold4+fold5", as_supervised=True)
"""

import csv
import dataclasses
import hashlib
import io
import json
import math
import pathlib
import re

from absl import logging
import numpy as np
import soundfile as sf
import tensorflow_datasets as tfds

from tfds_builders import common
from tfds_builders.audio_io import MAX_CLIP_SECONDS, AudioDataError, load_clip, one_line
from tfds_builders.folds import stratified_folds

DEFAULT_SAMPLE_RATE = 22050
DEFAULT_NUM_FOLDS = 5
# A file's last piece shorter than a clip becomes a zero-padded clip only if it
# is at least this fraction of a clip (a file's first clip is always kept).
MIN_TAIL_FRACTION = 0.5
FOLDS_CSV = "folds.csv"
# Extensions read as audio (case-insensitive); MP3 only where libsndfile reads it.
MP3_READABLE = "MP3" in sf.available_formats()
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg") + ((".mp3",) if MP3_READABLE else ())
# Folders created by macOS archivers, skipped like hidden entries.
_SKIPPED_NAMES = ("__MACOSX",)
_LAYOUT_HINT = "one sub-folder of audio files per class, e.g. dog/a.wav and cat/b.flac"


@dataclasses.dataclass(frozen=True)
class AudioFile:
    """One audio file of the folder, as scanned by `make_config`."""

    path: str  # Relative to audio_dir, with "/" separators: "dog/a.wav".
    label: int  # Index of its class folder in the sorted class names.
    size: int  # Bytes.
    mtime_ns: int
    num_frames: int  # Samples per channel at the file's own rate.
    file_rate: int
    fold: int


@dataclasses.dataclass(eq=False)
class AudioFolderConfig(tfds.core.BuilderConfig):
    """A folder's files, classes and folds with the options; made by `make_config`."""

    audio_dir: str = ""
    sample_rate: int = DEFAULT_SAMPLE_RATE
    num_samples: int = 0
    num_folds: int = DEFAULT_NUM_FOLDS
    classes: tuple = ()
    # AudioFile entries, sorted by path; left out of the repr TFDS logs.
    files: tuple = dataclasses.field(default=(), repr=False)
    fold_source: str = "stratified"  # Or FOLDS_CSV.

    @property
    def options(self):
        """What the data was made from, as stored in `builder.info.metadata`."""
        return {
            "audio_dir": self.audio_dir,
            "sample_rate": self.sample_rate,
            "clip_seconds": self.num_samples / self.sample_rate,
            "num_samples": self.num_samples,
            "num_folds": self.num_folds,
            "folds": self.fold_source,
            "num_files": len(self.files),
        }


class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """DatasetBuilder for a folder of recordings; make it with `make_builder`."""

    # Named explicitly: the name is the data's directory, <data_dir>/audio_folder/.
    name = "audio_folder"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: one class per sub-folder, clips cut from long files, folds.",
    }

    def __init__(self, *, config=None, **kwargs):
        if not isinstance(config, AudioFolderConfig):
            raise AudioDataError(
                "the audio_folder dataset is made from a folder of recordings, not by name: "
                "build it with tfds_builders.audio_folder.builder.make_builder(audio_dir)"
            )
        super().__init__(config=config, **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        seconds = config.num_samples / config.sample_rate
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "audio": common.int16_audio(
                        config.num_samples,
                        config.sample_rate,
                        f"{seconds:g} s mono waveform, int16 PCM at {config.sample_rate} Hz.",
                    ),
                    "label": tfds.features.ClassLabel(names=config.classes),
                    "filename": tfds.features.Text(
                        doc="The source file, relative to audio_dir, e.g. dog/a.wav."
                    ),
                    "clip_index": tfds.features.Scalar(
                        dtype=np.int32, doc="Which clip of the file: 0 for its first."
                    ),
                    "fold": tfds.features.Scalar(
                        dtype=np.int32, doc=f"Cross-validation fold, 1..{config.num_folds}."
                    ),
                }
            ),
            supervised_keys=("audio", "label"),
            metadata=tfds.core.MetadataDict(config.options),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # The data is the user's folder: nothing to download.
        config = self.builder_config
        return {
            f"fold{fold}": self._generate_examples([f for f in config.files if f.fold == fold])
            for fold in range(1, config.num_folds + 1)
        }

    def _generate_examples(self, files):
        # Files are <class>/<name>.<ext> (or deeper, <class>/<sub-folder>/...): the
        # label is the top folder. Each yields clips keyed <relative path>:<clip index>.
        config = self.builder_config
        root = pathlib.Path(config.audio_dir)
        for audio_file in files:
            path = root / audio_file.path
            _check_unchanged(path, audio_file, root)
            # The whole file at the target rate: librosa's resampler returns
            # ceil(frames * rate / file_rate) samples.
            length = -(-audio_file.num_frames * config.sample_rate // audio_file.file_rate)
            waveform = load_clip(path, config.sample_rate, length)
            for index, start in enumerate(clip_starts(length, config.num_samples)):
                clip = np.zeros(config.num_samples, dtype=np.int16)
                piece = waveform[start : start + config.num_samples]
                clip[: len(piece)] = piece
                yield f"{audio_file.path}:{index}", {
                    "audio": clip,
                    "label": audio_file.label,
                    "filename": audio_file.path,
                    "clip_index": index,
                    "fold": audio_file.fold,
                }


def make_builder(
    audio_dir,
    *,
    sample_rate=DEFAULT_SAMPLE_RATE,
    clip_seconds=None,
    num_folds=DEFAULT_NUM_FOLDS,
    data_dir=None,
) -> tfds.core.DatasetBuilder:
    """The builder of a folder of recordings, one sub-folder per class.

    Scans `audio_dir` (file names, sizes, modification times and audio headers,
    no decoding) and returns a builder whose `download_and_prepare()` prepares
    the data, or reuses it if this folder, unchanged, was prepared before with
    the same options in `data_dir`. See README.md for the folder layout.

    Args:
      audio_dir: the folder: `<class>/<file>.{wav,flac,ogg,mp3}`, and optionally
        `folds.csv` assigning each file to a fold.
      sample_rate: rate of the stored clips, in Hz.
      clip_seconds: clip length; by default the longest file's duration, at most
        10 s. Longer files are cut into consecutive clips, shorter ones padded.
      num_folds: number of folds, split names `fold1`..`fold{num_folds}`.
      data_dir: TFDS data directory (default: TFDS's, ~/tensorflow_datasets).

    Returns:
      A `Builder` with splits `fold1`..`fold{num_folds}` and features `audio`,
      `label` (classes = sorted sub-folder names), `filename`, `clip_index`, `fold`.

    Raises:
      AudioDataError: the folder or an option is unusable (one-line message).
    """
    config = make_config(
        audio_dir, sample_rate=sample_rate, clip_seconds=clip_seconds, num_folds=num_folds
    )
    return Builder(config=config, data_dir=data_dir)


def make_config(
    audio_dir,
    *,
    sample_rate=DEFAULT_SAMPLE_RATE,
    clip_seconds=None,
    num_folds=DEFAULT_NUM_FOLDS,
) -> AudioFolderConfig:
    """Scans `audio_dir` and returns its `AudioFolderConfig` (see `make_builder`)."""
    sample_rate, num_folds = _check_options(sample_rate, clip_seconds, num_folds)
    root = pathlib.Path(audio_dir).expanduser()
    if not root.is_dir():
        problem = "is not a folder" if root.exists() else "does not exist"
        raise AudioDataError(f"audio_dir {root} {problem}; give a folder holding {_LAYOUT_HINT}")
    root = root.resolve()
    classes, paths_by_class = _scan(root)

    # (frames, rate) of every audio file, from its header: cheap, and an
    # unreadable file fails here rather than halfway through preparation.
    headers = {
        path: _read_header(root / path) for paths in paths_by_class.values() for path in paths
    }
    if clip_seconds is None:  # As long as the longest file, but at most MAX_CLIP_SECONDS.
        longest = max(-(-frames * sample_rate // rate) for frames, rate in headers.values())
        num_samples = min(longest, round(MAX_CLIP_SECONDS * sample_rate))
    else:
        num_samples = max(1, round(clip_seconds * sample_rate))

    csv_path = root / FOLDS_CSV
    if csv_path.is_file():
        folds = _read_folds_csv(csv_path, root, sorted(headers), num_folds)
        fold_source = FOLDS_CSV
        csv_digest = hashlib.sha256(csv_path.read_bytes()).hexdigest()
    else:
        folds = stratified_folds(paths_by_class, num_folds)  # {relative path: fold}
        fold_source = "stratified"
        csv_digest = None
        if len(folds) < num_folds:
            raise AudioDataError(
                f"audio_dir {root} holds {len(folds)} audio files, fewer than num_folds="
                f"{num_folds}; add recordings or use fewer folds"
            )
        for name, paths in paths_by_class.items():
            if len(paths) < num_folds:
                logging.warning(
                    "audio_folder: class %r has %d files for %d folds; some folds hold none of it.",
                    name, len(paths), num_folds,
                )

    files = []
    for label, name in enumerate(classes):
        for path in paths_by_class[name]:
            stat = (root / path).stat()
            frames, rate = headers[path]
            files.append(
                AudioFile(path, label, stat.st_size, stat.st_mtime_ns, frames, rate, folds[path])
            )
    files.sort(key=lambda f: f.path)

    fingerprint = json.dumps(
        {
            "version": str(Builder.VERSION),
            "audio_dir": str(root),
            "sample_rate": sample_rate,
            "num_samples": num_samples,
            "num_folds": num_folds,
            "files": [[f.path, f.size, f.mtime_ns, f.fold] for f in files],
            "folds_csv": csv_digest,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", root.name).strip("_")[:40] or "folder"
    seconds = num_samples / sample_rate
    return AudioFolderConfig(
        name=f"{slug}-{digest}",
        description=(
            f"{root}: {len(classes)} classes, {len(files)} files, {seconds:g} s clips at "
            f"{sample_rate} Hz, {num_folds} folds ({fold_source})"
        ),
        audio_dir=str(root),
        sample_rate=sample_rate,
        num_samples=num_samples,
        num_folds=num_folds,
        classes=tuple(classes),
        files=tuple(files),
        fold_source=fold_source,
    )


def clip_starts(length, num_samples):
    """Where the clips cut from a waveform of `length` samples start.

    Consecutive clips of `num_samples`; a last piece shorter than a clip is kept
    (to be zero-padded) if it is at least `MIN_TAIL_FRACTION` of a clip, and
    dropped otherwise. A waveform shorter than a clip gives one clip.
    """
    full, tail = divmod(int(length), int(num_samples))
    count = full + (1 if tail >= MIN_TAIL_FRACTION * num_samples else 0)
    return [i * num_samples for i in range(max(count, 1))]


def _check_options(sample_rate, clip_seconds, num_folds):
    def whole(value):
        return isinstance(value, (int, np.integer, float)) and float(value).is_integer()

    if not whole(sample_rate) or sample_rate <= 0:
        raise AudioDataError(
            f"sample_rate must be a positive whole number of Hz, got {sample_rate!r}"
        )
    if clip_seconds is not None and not (
        isinstance(clip_seconds, (int, float, np.number)) and 0 < clip_seconds < math.inf
    ):
        raise AudioDataError(
            f"clip_seconds must be a positive number of seconds or None, got {clip_seconds!r}"
        )
    if not whole(num_folds) or num_folds < 2:
        raise AudioDataError(f"num_folds must be a whole number of at least 2, got {num_folds!r}")
    return int(sample_rate), int(num_folds)


def _skipped(name):
    return name.startswith(".") or name in _SKIPPED_NAMES


def _scan(root):
    """Class names (sorted) and {class: sorted relative paths of its audio files}."""
    ignored = {"hidden": 0, "non-audio": 0}
    classes = []
    loose_audio = 0
    for entry in sorted(root.iterdir()):
        if _skipped(entry.name):
            ignored["hidden"] += 1
        elif entry.is_dir():
            classes.append(entry.name)
        elif entry.name != FOLDS_CSV:
            ignored["non-audio"] += 1
            loose_audio += entry.suffix.lower() in AUDIO_EXTENSIONS
    if len(classes) < 2:
        found = f" ({', '.join(classes)})" if classes else ""
        raise AudioDataError(
            f"audio_dir {root} has {len(classes)} class folder(s){found}, at least 2 are "
            f"needed; put {_LAYOUT_HINT}"
        )
    if loose_audio:
        logging.warning(
            "audio_folder: ignored %d audio file(s) directly in %s; put them in their class's "
            "sub-folder.", loose_audio, root,
        )

    paths_by_class = {}
    unreadable_mp3 = 0
    for name in classes:
        paths = []
        for path in _walk(root / name, ignored):
            if path.suffix.lower() in AUDIO_EXTENSIONS:
                paths.append(path.relative_to(root).as_posix())
            else:
                ignored["non-audio"] += 1
                unreadable_mp3 += path.suffix.lower() == ".mp3"
        if not paths:
            raise AudioDataError(
                f"class folder {root / name} holds no audio files "
                f"({', '.join(AUDIO_EXTENSIONS)}); add recordings to it or remove it"
            )
        paths_by_class[name] = paths
    if unreadable_mp3:
        logging.warning(
            "audio_folder: ignored %d .mp3 file(s): the installed libsndfile cannot read MP3.",
            unreadable_mp3,
        )
    logging.info(
        "audio_folder: %s holds %d audio files in %d classes; ignored %d hidden and %d "
        "non-audio entries.",
        root, sum(map(len, paths_by_class.values())), len(classes),
        ignored["hidden"], ignored["non-audio"],
    )
    return classes, paths_by_class


def _walk(folder, ignored):
    """The files under `folder`, sorted, skipping (and counting) hidden entries."""
    for entry in sorted(folder.iterdir()):
        if _skipped(entry.name):
            ignored["hidden"] += 1
        elif entry.is_dir():
            yield from _walk(entry, ignored)
        else:
            yield entry


def _read_header(path):
    """(frames, sample rate) of an audio file, from its header."""
    try:
        info = sf.info(str(path))
    except Exception as err:  # libsndfile reports every problem its own way.
        reason = getattr(err, "error_string", None) or err
        raise AudioDataError(
            f"cannot decode audio file {path}: {one_line(reason)}; replace it with a "
            "readable file or move it out of the folder"
        ) from err
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioDataError(
            f"audio file {path} holds no samples; delete it or replace it with a recording"
        )
    return int(info.frames), int(info.samplerate)


def _read_folds_csv(csv_path, root, audio_paths, num_folds):
    """{relative path: fold} from folds.csv, which must list each audio file once."""
    fix = (
        f"list every audio file once as filename,fold with the filename relative to {root} "
        f"(e.g. dog/a.wav,2) and folds 1..{num_folds}"
    )
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise AudioDataError(f"{csv_path} is not UTF-8 text ({one_line(err)}); {fix}") from err
    reader = csv.DictReader(io.StringIO(text))
    fields = [name.strip() for name in reader.fieldnames or ()]
    missing = [c for c in ("filename", "fold") if c not in fields]
    if missing:
        raise AudioDataError(
            f"{csv_path} lacks the column(s) {', '.join(missing)} in its header line; {fix}"
        )
    reader.fieldnames = fields
    known = set(audio_paths)
    folds, first_line = {}, {}
    for row in reader:
        line = reader.line_num
        filename = (row["filename"] or "").strip().replace("\\", "/").removeprefix("./")
        fold_text = (row["fold"] or "").strip()
        if not filename and not fold_text:
            continue
        if filename in first_line:
            raise AudioDataError(
                f"{csv_path} line {line}: {filename} is listed again (first on line "
                f"{first_line[filename]}); {fix}"
            )
        if filename not in known:
            raise AudioDataError(
                f"{csv_path} line {line}: {filename!r} is not an audio file in {root} "
                f"(hidden and non-audio files are ignored); {fix}"
            )
        try:
            fold = int(fold_text)
        except ValueError:
            raise AudioDataError(
                f"{csv_path} line {line}: fold {fold_text!r} is not a whole number; {fix}"
            ) from None
        if not 1 <= fold <= num_folds:
            hint = f" or pass num_folds={fold}" if fold > num_folds else ""
            raise AudioDataError(
                f"{csv_path} line {line}: fold {fold} is outside 1..{num_folds}; renumber "
                f"it{hint}"
            )
        folds[filename] = fold
        first_line[filename] = line
    unlisted = [path for path in audio_paths if path not in folds]
    if unlisted:
        raise AudioDataError(
            f"{csv_path} does not list {len(unlisted)} audio file(s), first {unlisted[0]}; {fix}"
        )
    unused = sorted(set(range(1, num_folds + 1)) - set(folds.values()))
    if unused:
        raise AudioDataError(
            f"{csv_path} puts no file in fold {unused[0]} of 1..{num_folds}; give every fold "
            "files, or renumber the folds 1..N and pass num_folds=N"
        )
    return folds


def _check_unchanged(path, audio_file, root):
    try:
        stat = path.stat()
    except FileNotFoundError:
        stat = None
    if stat is None or (stat.st_size, stat.st_mtime_ns) != (audio_file.size, audio_file.mtime_ns):
        what = "was removed" if stat is None else "changed"
        raise AudioDataError(
            f"audio file {path} {what} after make_builder scanned {root}; call make_builder "
            "again so the folder as it is now gets prepared"
        )
