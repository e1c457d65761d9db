"""GTZAN: 1000 thirty-second music excerpts in 10 genres, as folds or fault-filtered."""

import dataclasses
import hashlib
import re

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from tfds_builders import common
from tfds_builders.audio_io import AudioDataError

CLIP_SECONDS = 30
SAMPLE_RATE = 22050  # The recordings' own rate.
NUM_SAMPLES = CLIP_SECONDS * SAMPLE_RATE
NUM_FOLDS = 10
# The genres in label order, as in labels.txt; each is a folder of the data root.
GENRES = (
    "blues", "classical", "country", "disco", "hiphop",
    "jazz", "metal", "pop", "reggae", "rock",
)
# The original archive of Tzanetakis and Cook (no longer served by its host).
URL = "http://opihi.cs.uvic.ca/sound/genres.tar.gz"
ARCHIVE_NAME = "genres.tar.gz"
# The extracted original (`genres/<genre>/<genre>.NNNNN.au`) and the widely shared
# WAV copy (`genres_original/<genre>/<genre>.NNNNN.wav`).
FOLDER_NAMES = ("genres", "genres_original")
FAULT_FILTERED_SPLITS = ("train", "valid", "test")
PROTOCOLS = ("folds", "fault_filtered")
# Seed of the fold assignment: changing it changes every fold, so it never changes.
FOLD_SEED = "gtzan-folds-1"
# Keys of `builder.info.metadata`, filled while the dataset is prepared.
SKIPPED_FILES = "skipped_files"  # Source files that could not be decoded.
MISSING_IDS = "missing_ids"  # fault_filtered ids absent from the source.

_HERE = epath.Path(__file__).parent
_LABELS_PATH = _HERE / "labels.txt"
_FAULT_FILTERED_DIR = _HERE / "fault_filtered"
_ID = re.compile(r"([a-z]+)\.\d{5}")
_CLIP_FILE = re.compile(r"(([a-z]+)\.\d{5})\.(au|wav)")
_PROTOCOL_DESCRIPTIONS = {
    "folds": (
        "Every clip in 10 stratified folds fold1..fold10 for cross-validation; "
        "artists and replicas straddle folds"
    ),
    "fault_filtered": (
        "Kereliuk, Sturm and Larsen's (2015) artist-filtered train/valid/test "
        "split (443/197/290) without replicas, mislabelings or distortions"
    ),
}


@dataclasses.dataclass(eq=False)
class GtzanConfig(common.RateConfig):
    """A protocol (`folds` or `fault_filtered`) at a clip rate.

    Attributes:
      sample_rate: rate of the stored clips in Hz; each clip is
        `CLIP_SECONDS * sample_rate` samples long.
      protocol: "folds" or "fault_filtered".
    """

    sample_rate: int = SAMPLE_RATE
    protocol: str = "folds"

    @property
    def num_samples(self):
        return CLIP_SECONDS * self.sample_rate


def _config(protocol, rate):
    if rate == SAMPLE_RATE:  # Named after the protocol alone, as before other rates.
        return GtzanConfig(name=protocol, protocol=protocol, sample_rate=rate,
                           description=f"{_PROTOCOL_DESCRIPTIONS[protocol]}.")
    return GtzanConfig(
        name=common.rate_config_name(rate, protocol),
        protocol=protocol,
        sample_rate=rate,
        description=f"{_PROTOCOL_DESCRIPTIONS[protocol]}; clips resampled to {rate} Hz.",
        # Its own history: added later, beside the unchanged 1.0.0 configs.
        release_notes={
            "1.0.0": (
                f"Initial release of this config, added after folds and fault_filtered "
                f"(which did not change): the clips of {protocol} resampled at "
                f"preparation to {rate} Hz (soxr_hq), {CLIP_SECONDS * rate} int16 "
                "samples each."
            ),
        },
    )


class Builder(common.ArchiveBuilder, skip_registration=True):
    """DatasetBuilder for GTZAN (configs `folds`: `fold1`..`fold10`, `fault_filtered`).

    Both protocols at the recordings' 22050 Hz (`folds`, `fault_filtered`) and
    resampled to 16000 and 32000 Hz (`folds_16000hz`, ..., `fault_filtered_32000hz`).

    TFDS's catalog has a `gtzan` of its own, which TFDS registers when it loads its
    catalog (e.g. for `tfds.builder("spoken_digit")`) and which a second registration
    would break: this builder stays out of TFDS's registry and is made by class
    (`tfds_builders.builder("gtzan/fault_filtered")`); it keeps the name `gtzan`, so
    its data lives in `<data_dir>/gtzan/<config>/<version>/`.
    """

    name = "gtzan"

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": (
            "Initial release: genres.tar.gz or the genres_original/ WAV copy, clips as "
            "661500 int16 samples at 22.05 kHz; undecodable files skipped and recorded."
        ),
    }
    BUILDER_CONFIGS = [
        *(_config(protocol, SAMPLE_RATE) for protocol in PROTOCOLS),
        *(_config(protocol, rate) for protocol in PROTOCOLS for rate in common.PRETRAINED_RATES),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "folds"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Optional: without a manual copy the builder tries to download {URL}, which
    is no longer served. Put one of these in the manual_dir instead:
      `<manual_dir>/{ARCHIVE_NAME}`: the original archive (`genres/<genre>/<genre>.NNNNN.au`);
      `<manual_dir>/genres/`: that archive extracted;
      `<manual_dir>/genres_original/`: the folder of the widely shared WAV copy
      (`genres_original/<genre>/<genre>.NNNNN.wav`, e.g. from the Kaggle "GTZAN
      Dataset - Music Genre Classification" download, where it is `Data/genres_original/`).
    The default manual_dir is `<data_dir>/downloads/manual/`.
    """

    TITLE = "GTZAN"
    URL = URL
    WHAT_TO_PUT = (
        "a copy of genres.tar.gz (its original address is dead), its extracted "
        "genres/ folder, or the shared copy's genres_original/ folder"
    )
    ARCHIVE_NAMES = (ARCHIVE_NAME,)
    FOLDER_NAMES = FOLDER_NAMES
    # No MARKER: `_data_root` looks for the ten genre folders instead.

    def _info(self) -> tfds.core.DatasetInfo:
        rate = self.builder_config.sample_rate
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "audio": common.int16_audio(
                        self.builder_config.num_samples,
                        rate,
                        f"{CLIP_SECONDS} s mono waveform, int16 PCM at {rate / 1000:g} kHz.",
                    ),
                    "label": tfds.features.ClassLabel(names_file=_LABELS_PATH),
                    "filename": tfds.features.Text(doc="Source file name, e.g. jazz.00054.wav."),
                    "fold": tfds.features.Scalar(
                        dtype=np.int32,
                        doc="Cross-validation fold 1..10 (folds); 0 (fault_filtered).",
                    ),
                }
            ),
            supervised_keys=("audio", "label"),
            homepage="http://marsyas.info/downloads/datasets.html",
            license="None published; the excerpts are copyrighted recordings shared for research.",
            # Filled by `_split_generators` and `_generate_examples` (skipped and
            # suspect files); saved with the prepared dataset as metadata.json. Read
            # it with `skipped_files(builder)`.
            metadata=common.metadata(),
        )

    def _data_root(self, folder, origin):
        """The folder holding the ten genre folders: `folder` or one level below.

        The archive extracts to `genres/`; the WAV copy is `genres_original/`.
        """
        folder = epath.Path(folder)
        candidates = [folder] + sorted(p for p in folder.iterdir() if p.is_dir())
        for candidate in candidates:
            present = [genre for genre in GENRES if (candidate / genre).is_dir()]
            if len(present) == len(GENRES):
                return candidate
            if present:
                missing = [f"{genre}/" for genre in GENRES if genre not in present]
                raise AudioDataError(
                    f"{candidate} (from the {origin}) lacks the genre folders "
                    f"{', '.join(missing)}; extract the complete {ARCHIVE_NAME} or copy "
                    "the complete genres_original/ folder again"
                )
        raise AudioDataError(
            f"no genre folders ({GENRES[0]}/, {GENRES[1]}/, ...) in {folder} (from the "
            f"{origin}); it is not GTZAN: use {ARCHIVE_NAME} ({self.URL}) or the "
            "genres_original/ folder of the shared WAV copy"
        )

    def split_names(self):
        """The splits preparing this builder makes, known before it is prepared."""
        if self.builder_config.protocol == "folds":
            return [f"fold{fold}" for fold in range(1, NUM_FOLDS + 1)]
        return list(FAULT_FILTERED_SPLITS)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = self._source_root(dl_manager)
        files = _list_clips(root)
        metadata = self.info.metadata
        metadata[SKIPPED_FILES] = []  # Appended to by `_generate_examples`.

        if self.builder_config.protocol == "folds":
            metadata[MISSING_IDS] = []
            # Folds come from the names alone, before any decoding, so a file that
            # turns out undecodable leaves every other clip in its fold.
            folds = assign_folds(files)
            return {
                f"fold{fold}": self._generate_examples(
                    [(files[i], fold) for i in sorted(files) if folds[i] == fold]
                )
                for fold in range(1, NUM_FOLDS + 1)
            }

        lists = read_fault_filtered()
        missing = sorted(i for ids in lists.values() for i in ids if i not in files)
        metadata[MISSING_IDS] = missing
        if missing:
            logging.warning(
                "GTZAN: %d id(s) of the fault-filtered lists have no file in %s and are "
                "left out (recorded in info.metadata[%r]), first %s",
                len(missing), root, MISSING_IDS, missing[0],
            )
        return {
            split: self._generate_examples([(files[i], 0) for i in sorted(ids) if i in files])
            for split, ids in lists.items()
        }

    def _generate_examples(self, clips):
        # Files are named <genre>.<NNNNN>.au (or .wav), e.g. genres/jazz/jazz.00054.au;
        # the label is the genre the name starts with, which is also its folder.
        rate = self.builder_config.sample_rate
        num_samples = self.builder_config.num_samples
        for path, fold in clips:
            try:
                with path.open("rb") as audio_file:
                    audio = common.load_clip_noting_suspects(
                        self, audio_file, path.name, rate, num_samples
                    )
            except AudioDataError as err:
                skipped = self.info.metadata[SKIPPED_FILES]
                skipped.append(path.name)
                skipped.sort()
                logging.warning(
                    "GTZAN: skipped %s (recorded in info.metadata[%r]): %s",
                    path.name, SKIPPED_FILES, err,
                )
                continue
            yield path.name, {
                "audio": audio,
                "label": path.name.split(".")[0],
                "filename": path.name,
                "fold": fold,
            }


def skipped_files(builder):
    """Names of the source files the prepared `builder` skipped as undecodable.

    E.g. `["jazz.00054.wav"]` for the shared WAV copy, `[]` for the original
    archive. Read from `builder.info.metadata`, so it also works on a builder that
    loads a dataset prepared earlier.

    Raises:
      ValueError: the dataset is not prepared in `builder.data_dir`.
    """
    return _prepared_metadata(builder, SKIPPED_FILES)


def missing_ids(builder):
    """Ids of the fault-filtered lists that the source lacked (`[]` for `folds`)."""
    return _prepared_metadata(builder, MISSING_IDS)


def _prepared_metadata(builder, key):
    metadata = builder.info.metadata
    if metadata is None or key not in metadata.keys():
        raise ValueError(
            f"{builder.info.full_name} is not prepared in {builder.data_dir}; "
            "call download_and_prepare() first"
        )
    return list(metadata[key])


def assign_folds(ids):
    """Maps each clip id (`genre.NNNNN`) to its fold, 1..`NUM_FOLDS`.

    Within each genre the ids are put in a fixed pseudo-random order (by the
    SHA-256 of `FOLD_SEED` and the id, which no library version or file-system
    listing order can change), then dealt round-robin into the folds, continuing
    from genre to genre in alphabetical order. A genre of 100 clips thus gives
    10 to every fold, and fold sizes never differ by more than one. The result
    depends only on the set of ids, not on their order or file extension.
    """
    by_genre = {}
    for clip_id in sorted(set(ids)):
        by_genre.setdefault(clip_id.split(".")[0], []).append(clip_id)
    folds = {}
    position = 0
    for genre in sorted(by_genre):
        for clip_id in sorted(by_genre[genre], key=_shuffle_key):
            folds[clip_id] = position % NUM_FOLDS + 1
            position += 1
    return folds


def _shuffle_key(clip_id):
    return hashlib.sha256(f"{FOLD_SEED}/{clip_id}".encode()).hexdigest()


def read_fault_filtered():
    """The ids of `fault_filtered/{train,valid,test}.txt`: {split: [genre.NNNNN, ...]}."""
    lists = {}
    seen = {}
    for split in FAULT_FILTERED_SPLITS:
        path = _FAULT_FILTERED_DIR / f"{split}.txt"
        ids = path.read_text().split()
        for clip_id in ids:
            match = _ID.fullmatch(clip_id)
            if not match or match[1] not in GENRES:
                raise AudioDataError(
                    f"{path}: {clip_id!r} is not a GTZAN id genre.NNNNN; restore the "
                    "file from the repository"
                )
            if clip_id in seen:
                raise AudioDataError(
                    f"{path}: {clip_id} is also in {seen[clip_id]}.txt; restore the "
                    "file from the repository"
                )
            seen[clip_id] = split
        lists[split] = ids
    return lists


def _list_clips(root):
    """{id: path} of the clips in the genre folders of `root`, found by name."""
    clips = {}
    ignored = []
    for genre in GENRES:
        for path in sorted((root / genre).iterdir()):
            match = _CLIP_FILE.fullmatch(path.name)
            if not match or match[2] != genre or not path.is_file():
                ignored.append(path)
                continue
            if match[1] in clips:
                raise AudioDataError(
                    f"{clips[match[1]]} and {path} are the same clip {match[1]}; "
                    "keep one of them"
                )
            clips[match[1]] = path
    if ignored:
        # Not clips: e.g. macOS `._jazz.00000.wav` shadows or stray notes.
        logging.warning(
            "GTZAN: ignored %d file(s) not named <genre>.NNNNN.au or .wav in their "
            "genre folder, first %s",
            len(ignored), ignored[0],
        )
    if not clips:
        raise AudioDataError(
            f"the genre folders of {root} hold no <genre>.NNNNN.au or .wav files; "
            f"extract the complete {ARCHIVE_NAME} or copy genres_original/ again"
        )
    return clips
