"""ESC-50: 2000 five-second environmental recordings in 50 classes and 5 folds."""

import csv
import io

from etils import epath
import numpy as np
import requests
import tensorflow_datasets as tfds

from keras_audio_cnn.audio_io import AudioDataError, load_clip, one_line

SAMPLE_RATE = 44100
NUM_SAMPLES = 5 * SAMPLE_RATE
NUM_FOLDS = 5
# The ESC-50 repository pinned to one commit, so the data cannot change under us.
COMMIT = "5983fb0c35e751b452e7c562d9207f27b76ddf0d"
URL = f"https://github.com/karolpiczak/ESC-50/archive/{COMMIT}.zip"
# The manual copy: GitHub's "Download ZIP" of the master branch, or its extraction.
ARCHIVE_NAME = "ESC-50-master.zip"
FOLDER_NAME = "ESC-50-master"
CSV_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
_LABELS_PATH = epath.Path(__file__).parent / "labels.txt"
# Seconds to wait for GitHub before declaring the machine offline. TFDS's own
# downloader retries 10 times with backoff (about 200 s on a machine without DNS).
_PROBE_TIMEOUT = (5, 10)


class BytesAudio(tfds.features.Audio):
    """`tfds.features.Audio` that honours `encoding` for waveforms given as arrays.

    TFDS 4.9's `Audio.encode_example` returns a numpy array untouched, skipping the
    `encoding` step, so int16 audio would be stored as int64 lists (about 6 bytes a
    sample, measured) or fail to serialise with `Encoding.BYTES`. Here arrays go through
    `tfds.features.Tensor.encode_example`: with `Encoding.BYTES` a clip is stored
    as its raw int16 bytes, 2 bytes a sample. Reading, `sample_rate` and the
    saved metadata are those of `Audio`.
    """

    def encode_example(self, audio_or_path_or_fobj):
        if isinstance(audio_or_path_or_fobj, np.ndarray):
            return tfds.features.Tensor.encode_example(self, audio_or_path_or_fobj)
        return super().encode_example(audio_or_path_or_fobj)


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for ESC-50 (splits `fold1`..`fold5`, the official folds)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": (
            "Initial release: ESC-50 at commit "
            f"{COMMIT[:7]}, clips as 220500 int16 samples at 44.1 kHz."
        ),
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Optional: without a manual copy the builder downloads {URL}.
    To work offline, save the ESC-50 repository archive as
    `<manual_dir>/{ARCHIVE_NAME}` (GitHub's "Download ZIP" of
    https://github.com/karolpiczak/ESC-50, top folder `{FOLDER_NAME}/`), or
    extract it there as `<manual_dir>/{FOLDER_NAME}/` (holding `meta/esc50.csv`
    and `audio/*.wav`). The default manual_dir is
    `<data_dir>/downloads/manual/`.
    """

    # The manual_dir of the running download_and_prepare, if the user gave one.
    _given_manual_dir = None

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "audio": BytesAudio(
                        shape=(NUM_SAMPLES,),
                        dtype=np.int16,
                        sample_rate=SAMPLE_RATE,
                        file_format=None,
                        encoding=tfds.features.Encoding.BYTES,
                        doc="5 s mono waveform, int16 PCM at 44.1 kHz.",
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
        )

    def _make_download_manager(self, download_dir, download_config):
        # The split generators must tell a manual_dir the user gave (which must hold
        # the data) from TFDS's default one (which may be empty: then we download).
        self._given_manual_dir = download_config.manual_dir
        return super()._make_download_manager(download_dir, download_config)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = self._manual_copy(dl_manager)
        if root is None:
            if self._given_manual_dir is not None:
                given = epath.Path(self._given_manual_dir)
                problem = (
                    f"holds neither {ARCHIVE_NAME} nor an extracted {FOLDER_NAME}/ folder"
                    if given.exists()
                    else "does not exist"
                )
                raise AudioDataError(
                    f"ESC-50 not found: manual_dir {given} {problem}; save the archive "
                    f"{URL} there as {ARCHIVE_NAME}"
                )
            root = self._download(dl_manager)

        rows = _read_metadata(root, self.info.features["label"].names)
        return {
            f"fold{fold}": self._generate_examples(
                root, [row for row in rows if row["fold"] == fold]
            )
            for fold in range(1, NUM_FOLDS + 1)
        }

    def _manual_copy(self, dl_manager):
        """The data root of the manual copy, or None if there is none."""
        try:
            manual_dir = dl_manager.manual_dir
        except AssertionError:  # TFDS's way of saying "missing or empty".
            return None
        folder = manual_dir / FOLDER_NAME
        if folder.exists():  # Preferred over the zip: nothing to extract.
            return _data_root(folder, f"manual folder {folder}")
        archive = manual_dir / ARCHIVE_NAME
        if archive.exists():
            return _data_root(dl_manager.extract(archive), f"archive {archive}")
        return None

    def _download(self, dl_manager):
        """Downloads and extracts the pinned archive, failing fast when offline."""
        save_as = epath.Path(dl_manager.download_dir) / "manual" / ARCHIVE_NAME
        try:
            _probe(URL)
            extracted = dl_manager.download_and_extract(URL)
        except Exception as err:  # Connection, HTTP status or extraction failure.
            raise AudioDataError(
                f"cannot download ESC-50 from {URL} ({one_line(err)}); on a machine "
                f"with internet download that archive and save it as {save_as} "
                "(or pass a manual_dir holding it), then run again"
            ) from err
        return _data_root(extracted, f"download of {URL}")

    def _generate_examples(self, root, rows):
        # Files are named {fold}-{src_file}-{take}-{target}.wav, e.g. 1-100032-A-0.wav;
        # the labels are read from meta/esc50.csv, which lists the same fields.
        for row in rows:
            path = root / "audio" / row["filename"]
            with path.open("rb") as audio_file:
                audio = load_clip(audio_file, SAMPLE_RATE, NUM_SAMPLES)
            yield row["filename"], {
                "audio": audio,
                "label": row["target"],
                "fold": row["fold"],
                "filename": row["filename"],
                "esc10": row["esc10"],
                "src_file": row["src_file"],
                "take": row["take"],
            }


def _probe(url):
    """Raises `requests.RequestException` within seconds if `url`'s host is unreachable.

    One request, no retries, honouring proxy settings. Any HTTP answer, even an
    error status, counts as reachable: the download itself reports those.
    """
    requests.head(url, timeout=_PROBE_TIMEOUT, allow_redirects=False).close()


def _data_root(folder, origin):
    """The folder holding `meta/esc50.csv`: `folder` itself or one level below.

    GitHub archives extract to a single top folder (`ESC-50-master/` or
    `ESC-50-<commit>/`), so the data root is found rather than assumed.
    """
    folder = epath.Path(folder)
    candidates = [folder] + sorted(p for p in folder.iterdir() if p.is_dir())
    for candidate in candidates:
        if (candidate / "meta" / "esc50.csv").exists():
            return candidate
    raise AudioDataError(
        f"no meta/esc50.csv in {folder} (from the {origin}); it is not the ESC-50 "
        f"repository: replace it with the archive {URL}"
    )


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
