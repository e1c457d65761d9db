"""What the audio builders share: int16 audio stored as bytes, archive sources,
configs by clip rate, and the record of suspect files."""

import dataclasses

from absl import logging
from etils import epath
import numpy as np
import requests
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core.proto import feature_pb2

from tfds_builders.audio_io import AudioDataError, load_clip_checked, one_line

# Seconds to wait for a host before declaring the machine offline. TFDS's own
# downloader retries 10 times with backoff (about 200 s on a machine without DNS).
_PROBE_TIMEOUT = (5, 10)
# Key of `builder.info.metadata`: {file name: why it looks damaged} of the files
# kept although `audio_io.load_clip_checked` found them suspect. Saved with the
# prepared dataset (metadata.json); data prepared before it existed lacks it.
SUSPECT_FILES = "suspect_files"
# The rates every builder here also offers its clips at, besides its own: those of
# AudioSet-pretrained networks (PANNs' CNN14 at 32 kHz, and its 16 kHz variant),
# whose frontends work only at the rate they were trained at.
PRETRAINED_RATES = (16000, 32000)


@dataclasses.dataclass(eq=False)
class RateConfig(tfds.core.BuilderConfig):
    """A config of a builder here: the rate of its clips, and which protocol it is.

    Each protocol of a builder (its splits) is offered at several rates; a clip at
    another rate than its file's is resampled once, while the dataset is prepared
    (`audio_io.load_clip`), so that training never resamples. A config's clips are
    always the dataset's clip length in seconds, at `sample_rate`.

    Attributes:
      sample_rate: rate of the stored clips, in Hz.
      protocol: which splits the config makes, for a builder with several
        (GTZAN's "folds" and "fault_filtered"); None for a builder with one. A
        config named after its protocol alone (`gtzan/fault_filtered`) names no
        rate; any other name (`gtzan/fault_filtered_32000hz`, `esc50/44100hz`)
        names its rate.
      formerly: `(config, version)` of earlier preparations that hold exactly
        this config's examples, e.g. `((None, "1.0.0"),)` for ESC-50's
        `44100hz`, prepared without a config before the builder had configs. A
        model recorded on one of them (`keras_audio_cnn.provenance`) is checked
        against this config as if recorded on it.
    """

    sample_rate: int = 0
    protocol: str | None = None
    formerly: tuple = ()

    @property
    def names_rate(self):
        """Whether the config's name says its rate (see `protocol`)."""
        return self.name != self.protocol


def rate_config_name(rate, protocol=None):
    """The name of the config of `protocol` at `rate`: `32000hz`, `folds_32000hz`."""
    return f"{protocol}_{rate}hz" if protocol else f"{rate}hz"


def metadata(**entries):
    """A builder's `info.metadata`: `entries`, and an empty record of suspect files."""
    return tfds.core.MetadataDict({**entries, SUSPECT_FILES: {}})


def load_clip_noting_suspects(builder, path_or_fileobj, name, sample_rate, num_samples):
    """`audio_io.load_clip`; a suspect file is kept, logged and recorded in the metadata.

    Args:
      builder: the builder preparing the dataset; its `info.metadata` is made by
        `metadata` and gets `{name: reason}` under `SUSPECT_FILES`.
      path_or_fileobj: the audio file.
      name: the file's name in the dataset (its `filename` feature).
      sample_rate: rate of the clip, in Hz.
      num_samples: length of the clip.
    """
    clip, suspect = load_clip_checked(path_or_fileobj, sample_rate, num_samples)
    if suspect:
        builder.info.metadata[SUSPECT_FILES][name] = suspect
        logging.warning(
            "%s: kept %s, which looks damaged (recorded in info.metadata[%r]): %s",
            builder.name, name, SUSPECT_FILES, suspect,
        )
    return clip


class BytesAudio(tfds.features.Audio):
    """`tfds.features.Audio` that honours `encoding` for waveforms given as arrays.

    TFDS 4.9's `Audio.encode_example` returns a numpy array untouched, skipping the
    `encoding` step, so int16 audio would be stored as int64 lists (about 6 bytes a
    sample, measured) or fail to serialise with `Encoding.BYTES`. Here arrays go
    through `tfds.features.Tensor.encode_example`: with `Encoding.BYTES` a clip is
    stored as its raw int16 bytes, 2 bytes a sample. Reading, `sample_rate` and the
    saved metadata are those of `Audio`.

    TFDS's `Audio.to_json_content` (saving the features) and `Tensor.decode_example`
    (reading raw bytes) read the deprecated `FeatureConnector.dtype`, which logs
    "`FeatureConnector.dtype` is deprecated" on every preparation and read; here
    both take the dtype from `np_dtype` instead, with the same results.
    """

    def encode_example(self, audio_or_path_or_fobj):
        if isinstance(audio_or_path_or_fobj, np.ndarray):
            return tfds.features.Tensor.encode_example(self, audio_or_path_or_fobj)
        return super().encode_example(audio_or_path_or_fobj)

    def to_json_content(self):
        # `Audio.to_json_content`, the same proto, with the dtype of `np_dtype`.
        tensor = tfds.features.Tensor.to_json_content(self)
        return feature_pb2.AudioFeature(
            shape=tensor.shape,
            dtype=tensor.dtype,
            file_format=self._file_format,
            sample_rate=self.sample_rate,
            encoding=self._encoding.name,
            lazy_decode=self._lazy_decode,
        )

    def decode_example(self, tfexample_data):
        if self._encoding != tfds.features.Encoding.BYTES or self._lazy_decode or None in self.shape:
            return super().decode_example(tfexample_data)
        # `Tensor.decode_example` of a fixed-shape raw-bytes tensor (the audio is
        # stored as samples, so `Audio` has nothing more to decode).
        samples = tf.io.decode_raw(tfexample_data, tf.dtypes.as_dtype(self.np_dtype))
        return tf.reshape(samples, self.shape)


def int16_audio(num_samples, sample_rate, doc):
    """The `audio` feature of every builder here: a fixed-length int16 clip."""
    return BytesAudio(
        shape=(num_samples,),
        dtype=np.int16,
        sample_rate=sample_rate,
        file_format=None,
        encoding=tfds.features.Encoding.BYTES,
        doc=doc,
    )


def probe(url):
    """Raises `requests.RequestException` within seconds if `url`'s host is unreachable.

    One request, no retries, honouring proxy settings. Any HTTP answer, even an
    error status, counts as reachable: the download itself reports those.
    """
    requests.head(url, timeout=_PROBE_TIMEOUT, allow_redirects=False).close()


class ArchiveBuilder(tfds.core.GeneratorBasedBuilder):
    """A builder whose data is one archive: downloaded, or given in a manual_dir.

    Subclasses set:
      TITLE: the dataset's name in messages, e.g. "ESC-50".
      URL: the archive to download.
      ARCHIVE_NAMES: file names accepted in the manual_dir, e.g. ("ESC-50-master.zip",).
      FOLDER_NAMES: extracted folder names accepted there, e.g. ("ESC-50-master",).
      MARKER: a path relative to the data root that identifies it, e.g. "meta/esc50.csv".
      WHAT_TO_PUT: optional, what a manual_dir must hold, for messages (default:
        the archive URL saved as ARCHIVE_NAMES[0]).

    `_source_root(dl_manager)` returns the data root: the manual folder (preferred:
    nothing to extract), the manual archive extracted, or the download. A manual_dir
    the user gave that holds none of them fails at once, and an offline download
    fails within seconds; both with a one-line `AudioDataError` naming the path.
    """

    TITLE = ""
    NUM_FOLDS = 0  # the official folds: splits fold1..fold{NUM_FOLDS}
    URL = ""
    ARCHIVE_NAMES = ()
    FOLDER_NAMES = ()
    MARKER = ""
    WHAT_TO_PUT = None

    def _instructions(self, directory):
        """What to do, in a message: the exact file (or folder) to put where."""
        if self.WHAT_TO_PUT:
            return f"put {self.WHAT_TO_PUT} in {directory}/"
        return f"save the archive {self.URL} as {epath.Path(directory) / self.ARCHIVE_NAMES[0]}"

    # The manual_dir of the running download_and_prepare, if the user gave one.
    _given_manual_dir = None

    def _make_download_manager(self, download_dir, download_config):
        # The split generators must tell a manual_dir the user gave (which must hold
        # the data) from TFDS's default one (which may be empty: then we download).
        self._given_manual_dir = download_config.manual_dir
        return super()._make_download_manager(download_dir, download_config)

    def _source_root(self, dl_manager):
        root = self._manual_root(dl_manager)
        if root is not None:
            return root
        if self._given_manual_dir is not None:
            given = epath.Path(self._given_manual_dir)
            wanted = " or ".join([*self.ARCHIVE_NAMES, *(f"{n}/" for n in self.FOLDER_NAMES)])
            problem = f"holds no {wanted}" if given.exists() else "does not exist"
            raise AudioDataError(
                f"{self.TITLE} not found: manual_dir {given} {problem}; "
                f"{self._instructions(given)}"
            )
        return self._download(dl_manager)

    def split_names(self):
        """The splits preparing this builder makes, known before it is prepared."""
        return [f"fold{fold}" for fold in range(1, self.NUM_FOLDS + 1)]

    def _official_folds(self, root, rows, num_folds):
        """Split generators `fold1`..`foldN`, each of the metadata rows of its fold."""
        return {
            f"fold{fold}": self._generate_examples(
                root, [row for row in rows if row["fold"] == fold]
            )
            for fold in range(1, num_folds + 1)
        }

    def _manual_root(self, dl_manager):
        """The data root of the manual copy, or None if there is none."""
        try:
            manual_dir = dl_manager.manual_dir
        except AssertionError:  # TFDS's way of saying "missing or empty".
            return None
        for name in self.FOLDER_NAMES:
            if (manual_dir / name).exists():
                return self._data_root(manual_dir / name, f"manual folder {manual_dir / name}")
        for name in self.ARCHIVE_NAMES:
            if (manual_dir / name).exists():
                extracted = dl_manager.extract(manual_dir / name)
                return self._data_root(extracted, f"archive {manual_dir / name}")
        return None

    def _download(self, dl_manager):
        """Downloads and extracts `URL`, failing fast when offline."""
        manual_dir = epath.Path(dl_manager.download_dir) / "manual"
        try:
            probe(self.URL)
            extracted = dl_manager.download_and_extract(self.URL)
        except Exception as err:  # Connection, HTTP status or extraction failure.
            raise AudioDataError(
                f"cannot download {self.TITLE} from {self.URL} ({one_line(err)}); "
                f"{self._instructions(manual_dir)} (or in a manual_dir you pass), "
                "then run again"
            ) from err
        return self._data_root(extracted, f"download of {self.URL}")

    def _data_root(self, folder, origin):
        """The folder holding `MARKER`: `folder` itself or one level below.

        Archives extract to a single top folder (`ESC-50-master/`,
        `ESC-50-<commit>/`, `UrbanSound8K/`), so the data root is found rather
        than assumed.
        """
        folder = epath.Path(folder)
        candidates = [folder] + sorted(p for p in folder.iterdir() if p.is_dir())
        for candidate in candidates:
            if (candidate / self.MARKER).exists():
                return candidate
        raise AudioDataError(
            f"no {self.MARKER} in {folder} (from the {origin}); it is not the "
            f"{self.TITLE} archive: replace it with {self.URL}"
        )
