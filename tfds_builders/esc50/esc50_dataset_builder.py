"""ESC-50: 2000 five-second environmental recordings in 50 classes and 5 folds."""

import csv
import dataclasses
import io

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from tfds_builders import common
from tfds_builders.audio_io import AudioDataError

CLIP_SECONDS = 5
SAMPLE_RATE = 44100  # The recordings' own rate, and the paper's.
NUM_SAMPLES = CLIP_SECONDS * SAMPLE_RATE
NUM_FOLDS = 5
# The ESC-50 repository pinned to one commit, so the data cannot change under us.
COMMIT = "5983fb0c35e751b452e7c562d9207f27b76ddf0d"
URL = f"https://github.com/karolpiczak/ESC-50/archive/{COMMIT}.zip"
# The manual copy: GitHub's "Download ZIP" of the master branch, or its extraction.
ARCHIVE_NAME = "ESC-50-master.zip"
FOLDER_NAME = "ESC-50-master"
CSV_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
_LABELS_PATH = epath.Path(__file__).parent / "labels.txt"


@dataclasses.dataclass(eq=False)
class Esc50Config(common.RateConfig):
    """The rate the clips are stored at; every config holds the same 2000 clips.

    Attributes:
      sample_rate: rate of the stored clips in Hz; each clip is
        `CLIP_SECONDS * sample_rate` samples long.
    """

    sample_rate: int = SAMPLE_RATE

    @property
    def num_samples(self):
        return CLIP_SECONDS * self.sample_rate


def _resampled_config(rate):
    return Esc50Config(
        name=common.rate_config_name(rate),
        sample_rate=rate,
        description=(
            f"Clips resampled at preparation to {rate} Hz (soxr_hq): "
            f"{CLIP_SECONDS * rate} int16 samples each."
        ),
    )


class Builder(common.ArchiveBuilder):
    """DatasetBuilder for ESC-50 (splits `fold1`..`fold5`, the official folds).

    Configs `44100hz` (default), `32000hz` and `16000hz`: the clip rate.
    """

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": (
            "Initial release: ESC-50 at commit "
            f"{COMMIT[:7]}, clips as 220500 int16 samples at 44.1 kHz."
        ),
        "1.1.0": (
            "Configs by clip rate: 44100hz (the default) holds the examples of 1.0.0 "
            "unchanged; 32000hz and 16000hz hold them resampled at preparation "
            "(soxr_hq). 1.0.0 had no config: its data stays readable in "
            "<data_dir>/esc50/1.0.0/ (tfds.builder_from_directory)."
        ),
    }
    BUILDER_CONFIGS = [
        Esc50Config(
            name=common.rate_config_name(SAMPLE_RATE),
            sample_rate=SAMPLE_RATE,
            description=(
                f"Clips at {SAMPLE_RATE} Hz, the recordings' own rate and the paper's: "
                f"{NUM_SAMPLES} int16 samples each, as in version 1.0.0."
            ),
            formerly=((None, "1.0.0"),),
        ),
        *(_resampled_config(rate) for rate in sorted(common.PRETRAINED_RATES, reverse=True)),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = common.rate_config_name(SAMPLE_RATE)
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Optional: without a manual copy the builder downloads {URL}.
    To work offline, save the ESC-50 repository archive as
    `<manual_dir>/{ARCHIVE_NAME}` (GitHub's "Download ZIP" of
    https://github.com/karolpiczak/ESC-50, top folder `{FOLDER_NAME}/`), or
    extract it there as `<manual_dir>/{FOLDER_NAME}/` (holding `meta/esc50.csv`
    and `audio/*.wav`). The default manual_dir is
    `<data_dir>/downloads/manual/`.
    """

    NUM_FOLDS = NUM_FOLDS
    TITLE = "ESC-50"
    URL = URL
    ARCHIVE_NAMES = (ARCHIVE_NAME,)
    FOLDER_NAMES = (FOLDER_NAME,)
    MARKER = "meta/esc50.csv"

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
                    "fold": tfds.features.Scalar(
                        dtype=np.int32, doc="Official cross-validation fold, 1..5."
                    ),
                    "filename": tfds.features.Text(),
                    "esc10": tfds.features.Scalar(
                        dtype=np.bool_, doc="Whether the clip is in the ESC-10 subset."
                    ),
                    "src_file": tfds.features.Text(doc="Freesound id of the source recording."),
                    "take": tfds.features.Text(doc="Fragment letter within the source."),
                }
            ),
            supervised_keys=("audio", "label"),
            homepage="https://github.com/karolpiczak/ESC-50",
            license="CC BY-NC 3.0 (the ESC-10 subset: CC BY 3.0)",
            metadata=common.metadata(),  # Suspect files, saved as metadata.json.
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = self._source_root(dl_manager)

        rows = _read_metadata(root, self.info.features["label"].names)
        return self._official_folds(root, rows, NUM_FOLDS)

    def _generate_examples(self, root, rows):
        # Files are named {fold}-{src_file}-{take}-{target}.wav, e.g. 1-100032-A-0.wav;
        # the labels are read from meta/esc50.csv, which lists the same fields.
        rate = self.builder_config.sample_rate
        num_samples = self.builder_config.num_samples
        for row in rows:
            path = root / "audio" / row["filename"]
            with path.open("rb") as audio_file:
                audio = common.load_clip_noting_suspects(
                    self, audio_file, row["filename"], rate, num_samples
                )
            yield row["filename"], {
                "audio": audio,
                "label": row["target"],
                "fold": row["fold"],
                "filename": row["filename"],
                "esc10": row["esc10"],
                "src_file": row["src_file"],
                "take": row["take"],
            }


def _read_metadata(root, names):
    """Reads and checks meta/esc50.csv; returns its rows with typed fields."""
    csv_path = root / "meta" / "esc50.csv"
    reader = csv.DictReader(io.StringIO(csv_path.read_text()))
    missing_columns = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or ())]
    if missing_columns:
        raise AudioDataError(
            f"{csv_path} lacks the columns {', '.join(missing_columns)}; "
            "use the unmodified meta/esc50.csv of the ESC-50 repository"
        )

    def fix_it(line, problem):
        return AudioDataError(
            f"{csv_path} line {line}: {problem}; "
            "use the unmodified meta/esc50.csv of the ESC-50 repository"
        )

    rows = []
    for line, raw in enumerate(reader, start=2):
        try:
            fold, target = int(raw["fold"]), int(raw["target"])
        except (TypeError, ValueError):
            raise fix_it(line, f"fold {raw['fold']!r} or target {raw['target']!r} is not a number")
        if not 1 <= fold <= NUM_FOLDS:
            raise fix_it(line, f"fold {fold} is outside 1..{NUM_FOLDS}")
        if not 0 <= target < len(names):
            raise fix_it(line, f"target {target} is outside 0..{len(names) - 1}")
        if raw["category"] != names[target]:
            raise fix_it(
                line,
                f"{raw['filename']} has category {raw['category']!r} but target {target} "
                f"is {names[target]!r} in {_LABELS_PATH}",
            )
        if raw["esc10"] not in ("True", "False"):
            raise fix_it(line, f"esc10 is {raw['esc10']!r}, not True or False")
        rows.append(
            {
                "filename": raw["filename"],
                "fold": fold,
                "target": target,
                "esc10": raw["esc10"] == "True",
                "src_file": raw["src_file"],
                "take": raw["take"],
            }
        )

    present = {p.name for p in (root / "audio").iterdir()} if (root / "audio").exists() else set()
    missing = [row["filename"] for row in rows if row["filename"] not in present]
    if missing:
        raise AudioDataError(
            f"{len(missing)} audio file(s) listed in {csv_path} are missing, first "
            f"{root / 'audio' / missing[0]}; extract the complete archive {URL} again"
        )
    return rows
