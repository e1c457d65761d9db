"""UrbanSound8K: 8732 urban sound excerpts of up to 4 s in 10 classes and 10 folds."""

import csv
import dataclasses
import io

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from tfds_builders import common
from tfds_builders.audio_io import AudioDataError

CLIP_SECONDS = 4
NUM_FOLDS = 10
# Zenodo record 1203745, the dataset's official host (version 1.0).
URL = "https://zenodo.org/records/1203745/files/UrbanSound8K.tar.gz"
# The manual copy: that archive, or its extraction.
ARCHIVE_NAME = "UrbanSound8K.tar.gz"
FOLDER_NAME = "UrbanSound8K"
CSV_NAME = "metadata/UrbanSound8K.csv"
CSV_COLUMNS = ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class")
SALIENCES = (1, 2)  # 1 foreground, 2 background.
_LABELS_PATH = epath.Path(__file__).parent / "labels.txt"


@dataclasses.dataclass(eq=False)
class UrbanSound8kConfig(common.RateConfig):
    """The rate the clips are resampled to; every config holds the same 8732 clips.

    Attributes:
      sample_rate: rate of the stored clips in Hz; each clip is
        `CLIP_SECONDS * sample_rate` samples long.
    """

    sample_rate: int = 22050

    @property
    def num_samples(self):
        return CLIP_SECONDS * self.sample_rate


class Builder(common.ArchiveBuilder):
    """DatasetBuilder for UrbanSound8K (splits `fold1`..`fold10`, the official folds).

    Configs `22050hz` (default), `44100hz`, `16000hz` and `32000hz`: the clip rate.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": (
            "Initial release: UrbanSound8K 1.0 (Zenodo record 1203745), clips "
            "as 4 s of int16 samples at the config's rate, zero-padded at the end."
        ),
    }
    BUILDER_CONFIGS = [
        UrbanSound8kConfig(
            name="22050hz",
            sample_rate=22050,
            description="Clips at 22050 Hz, the paper's rate: 88200 int16 samples each.",
        ),
        UrbanSound8kConfig(
            name="44100hz",
            sample_rate=44100,
            description="Clips at 44100 Hz: 176400 int16 samples each.",
        ),
        *(
            UrbanSound8kConfig(
                name=common.rate_config_name(rate),
                sample_rate=rate,
                description=f"Clips at {rate} Hz: {CLIP_SECONDS * rate} int16 samples each.",
                # Its own history: added later, beside the unchanged 1.0.0 configs.
                release_notes={
                    "1.0.0": (
                        f"Initial release of this config, added after 22050hz and 44100hz "
                        f"(which did not change): the same clips at {rate} Hz."
                    ),
                },
            )
            for rate in common.PRETRAINED_RATES
        ),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "22050hz"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Optional: without a manual copy the builder downloads {URL} (several GB).
    To work offline, save that archive as `<manual_dir>/{ARCHIVE_NAME}`, or
    extract it there as `<manual_dir>/{FOLDER_NAME}/` (holding
    `{CSV_NAME}` and `audio/fold1/` ... `audio/fold10/`). The default
    manual_dir is `<data_dir>/downloads/manual/`.
    """

    NUM_FOLDS = NUM_FOLDS
    TITLE = "UrbanSound8K"
    URL = URL
    ARCHIVE_NAMES = (ARCHIVE_NAME,)
    FOLDER_NAMES = (FOLDER_NAME,)
    MARKER = CSV_NAME

    def _info(self) -> tfds.core.DatasetInfo:
        rate = self.builder_config.sample_rate
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "audio": common.int16_audio(
                        self.builder_config.num_samples,
                        rate,
                        f"{CLIP_SECONDS} s mono waveform, int16 PCM at {rate} Hz; "
                        "shorter excerpts are zero-padded at the end.",
                    ),
                    "label": tfds.features.ClassLabel(names_file=_LABELS_PATH),
                    "fold": tfds.features.Scalar(
                        dtype=np.int32, doc=f"Official cross-validation fold, 1..{NUM_FOLDS}."
                    ),
                    "filename": tfds.features.Text(
                        doc="slice_file_name, {fsID}-{classID}-{occurrenceID}-{sliceID}.wav."
                    ),
                    "fsID": tfds.features.Scalar(
                        dtype=np.int64, doc="Freesound id of the source recording."
                    ),
                    "salience": tfds.features.Scalar(
                        dtype=np.int32, doc="1: foreground, 2: background."
                    ),
                    "start": tfds.features.Scalar(
                        dtype=np.float32, doc="Start of the slice in the source recording, s."
                    ),
                    "end": tfds.features.Scalar(
                        dtype=np.float32, doc="End of the slice in the source recording, s."
                    ),
                }
            ),
            supervised_keys=("audio", "label"),
            homepage="https://urbansounddataset.weebly.com/urbansound8k.html",
            license="CC BY-NC 3.0",
            metadata=common.metadata(),  # Suspect files, saved as metadata.json.
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = self._source_root(dl_manager)

        rows = _read_metadata(root, self.info.features["label"].names)
        return self._official_folds(root, rows, NUM_FOLDS)

    def _generate_examples(self, root, rows):
        # Files are audio/fold{fold}/{fsID}-{classID}-{occurrenceID}-{sliceID}.wav,
        # e.g. audio/fold5/100032-3-0-0.wav; the labels are read from
        # metadata/UrbanSound8K.csv, which lists the same fields.
        rate = self.builder_config.sample_rate
        num_samples = self.builder_config.num_samples
        for row in rows:
            path = root / "audio" / f"fold{row['fold']}" / row["filename"]
            with path.open("rb") as audio_file:
                audio = common.load_clip_noting_suspects(
                    self, audio_file, row["filename"], rate, num_samples
                )
            yield row["filename"], {"audio": audio, **row}


def _read_metadata(root, names):
    """Reads and checks metadata/UrbanSound8K.csv; returns its rows with typed fields.

    Each row becomes the features of one example except `audio`: `label` (the
    classID), `fold`, `filename`, `fsID`, `salience`, `start` and `end`.
    """
    csv_path = root / CSV_NAME
    reader = csv.DictReader(io.StringIO(csv_path.read_text()))
    missing_columns = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or ())]
    if missing_columns:
        raise AudioDataError(
            f"{csv_path} lacks the columns {', '.join(missing_columns)}; use the "
            f"unmodified {CSV_NAME} of the UrbanSound8K archive"
        )

    def fix_it(line, problem):
        return AudioDataError(
            f"{csv_path} line {line}: {problem}; use the unmodified {CSV_NAME} "
            "of the UrbanSound8K archive"
        )

    rows = []
    first_line = {}  # filename -> the CSV line listing it.
    for line, raw in enumerate(reader, start=2):
        filename = raw["slice_file_name"]
        try:
            fold, class_id = int(raw["fold"]), int(raw["classID"])
            fs_id, salience = int(raw["fsID"]), int(raw["salience"])
            start, end = float(raw["start"]), float(raw["end"])
        except (TypeError, ValueError):
            raise fix_it(
                line,
                f"{filename}: fold, classID, fsID, salience, start or end is not a number",
            )
        if filename in first_line:
            raise fix_it(line, f"{filename} is listed again (first on line {first_line[filename]})")
        first_line[filename] = line
        if not 1 <= fold <= NUM_FOLDS:
            raise fix_it(line, f"{filename} has fold {fold}, outside 1..{NUM_FOLDS}")
        if not 0 <= class_id < len(names):
            raise fix_it(line, f"{filename} has classID {class_id}, outside 0..{len(names) - 1}")
        if raw["class"] != names[class_id]:
            raise fix_it(
                line,
                f"{filename} has class {raw['class']!r} but classID {class_id} "
                f"is {names[class_id]!r} in {_LABELS_PATH}",
            )
        if salience not in SALIENCES:
            raise fix_it(line, f"{filename} has salience {salience}, not 1 or 2")
        rows.append(
            {
                "filename": filename,
                "label": class_id,
                "fold": fold,
                "fsID": fs_id,
                "salience": salience,
                "start": start,
                "end": end,
            }
        )

    # Each fold's folder is listed once; stray files there (.DS_Store) are ignored.
    present = {}
    for fold in range(1, NUM_FOLDS + 1):
        folder = root / "audio" / f"fold{fold}"
        present[fold] = {p.name for p in folder.iterdir()} if folder.exists() else set()
    missing = [row for row in rows if row["filename"] not in present[row["fold"]]]
    if missing:
        first = missing[0]
        first_path = root / "audio" / f"fold{first['fold']}" / first["filename"]
        raise AudioDataError(
            f"{len(missing)} audio file(s) listed in {csv_path} are missing, first "
            f"{first_path} (line {first_line[first['filename']]}); extract the complete "
            f"archive {URL} again"
        )
    return rows
