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

The steps live in modules of their own: `options` (defaults and checks),
`scan` (class folders, audio files, headers), `folds_csv` (the user's folds),
`clips` (clip length and cutting) and `fingerprint` (the config name).
"""

import dataclasses
import pathlib

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from tfds_builders import common
from tfds_builders.audio_folder import clips, fingerprint, scan
from tfds_builders.audio_folder.folds_csv import FOLDS_CSV, read_folds_csv
from tfds_builders.audio_folder.options import (
    DEFAULT_NUM_FOLDS,
    DEFAULT_SAMPLE_RATE,
    check_options,
)
from tfds_builders.audio_io import AudioDataError
from tfds_builders.folds import FILE_FOLD_ASSIGNMENT, file_folds


@dataclasses.dataclass(eq=False)
class AudioFolderConfig(tfds.core.BuilderConfig):
    """A folder's files, classes and folds with the options; made by `make_config`."""

    audio_dir: str = ""
    sample_rate: int = DEFAULT_SAMPLE_RATE
    num_samples: int = 0
    num_folds: int = DEFAULT_NUM_FOLDS
    classes: tuple = ()
    # scan.AudioFile entries, sorted by path; left out of the repr TFDS logs.
    files: tuple = dataclasses.field(default=(), repr=False)
    # Who dealt the folds: FILE_FOLD_ASSIGNMENT (`tfds_builders.folds.file_folds`)
    # or FOLDS_CSV.
    fold_source: str = FILE_FOLD_ASSIGNMENT

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
            metadata=common.metadata(**config.options),
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
            scan.check_unchanged(path, audio_file, root)
            # The whole file at the target rate.
            length = clips.resampled_length(
                audio_file.num_frames, audio_file.file_rate, config.sample_rate
            )
            waveform = common.load_clip_noting_suspects(
                self, path, audio_file.path, config.sample_rate, length
            )
            # A name that is not UTF-8 is stored (and hashed) as the bytes the OS gave
            # (`scan`: this module uses no `os`, which TFDS's builder tests forbid).
            name = scan.name_bytes(audio_file.path)
            for index, clip in enumerate(clips.cut_clips(waveform, config.num_samples)):
                yield name + b":%d" % index, {
                    "audio": clip,
                    "label": audio_file.label,
                    "filename": name,
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
    sample_rate, num_folds = check_options(sample_rate, clip_seconds, num_folds)
    root = scan.folder_root(audio_dir)
    classes, paths_by_class = scan.class_paths(root)
    headers = scan.read_headers(root, paths_by_class)
    num_samples = clips.clip_length(headers.values(), sample_rate, clip_seconds)
    csv_path = root / FOLDS_CSV
    scan.check_link(csv_path)
    if csv_path.is_file():
        folds = read_folds_csv(csv_path, root, sorted(headers), num_folds)
        fold_source = FOLDS_CSV
    else:
        folds = _file_folds(root, paths_by_class, num_folds)
        fold_source = FILE_FOLD_ASSIGNMENT
    files = scan.audio_files(root, classes, paths_by_class, headers, folds)
    seconds = num_samples / sample_rate
    return AudioFolderConfig(
        name=fingerprint.config_name(
            root,
            files,
            version=str(Builder.VERSION),
            sample_rate=sample_rate,
            num_samples=num_samples,
            num_folds=num_folds,
            folds_csv=csv_path if fold_source == FOLDS_CSV else None,
            fold_assignment=None if fold_source == FOLDS_CSV else fold_source,
        ),
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


def _file_folds(root, paths_by_class, num_folds):
    """{relative path: fold} of `tfds_builders.folds.file_folds`, with checks.

    Raises `AudioDataError` when a fold gets no file; warns for each class that
    some fold gets none of.
    """
    num_files = sum(map(len, paths_by_class.values()))
    if num_files < num_folds:
        raise AudioDataError(
            f"audio_dir {root} holds {num_files} audio files, fewer than num_folds="
            f"{num_folds}; add recordings or use fewer folds"
        )
    folds = file_folds([p for paths in paths_by_class.values() for p in paths], num_folds)
    empty = sorted(set(range(1, num_folds + 1)) - set(folds.values()))
    if empty:
        raise AudioDataError(
            f"audio_dir {root}: fold {empty[0]} of 1..{num_folds} gets none of its {num_files} "
            "audio files (each file's fold is a hash of its path, balanced only on average); "
            f"add recordings, use fewer folds (num_folds), or give every file's fold in "
            f"{root / FOLDS_CSV}"
        )
    for name, paths in paths_by_class.items():
        missing = sorted(set(range(1, num_folds + 1)) - {folds[p] for p in paths})
        if missing:
            logging.warning(
                "audio_folder: class %r has no file in fold(s) %s of 1..%d (%d files); models "
                "tested on those folds see none of it.",
                name, ", ".join(map(str, missing)), num_folds, len(paths),
            )
    return folds
