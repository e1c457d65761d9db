"""Test helpers shared by the builders' tests (import the module, not its classes)."""

import pathlib
import time
from unittest import mock

import numpy as np
import requests
import soundfile as sf
import soxr
import tensorflow_datasets as tfds

from tfds_builders import common
from tfds_builders.audio_io import AudioDataError


class ArchiveBuilderErrorTestCase(tfds.testing.TestCase):
    """A missing source fails fast with a one-line `AudioDataError` naming the path.

    Subclasses set `BUILDER` (a `common.ArchiveBuilder` subclass), `HOST` (the
    download host, for the simulated DNS failure) and `EMPTY_MANUAL_MESSAGE`
    (what an empty manual_dir's error says after "<manual_dir> holds no ").
    """

    BUILDER = None
    HOST = ""
    EMPTY_MANUAL_MESSAGE = ""

    def _prepare(self, manual_dir=None, builder=None):
        builder = builder or self.BUILDER(data_dir=self.tmp_dir)
        config = tfds.download.DownloadConfig(manual_dir=manual_dir)
        builder.download_and_prepare(download_config=config)

    def _assert_fails_fast(self, pattern, manual_dir=None):
        start = time.monotonic()
        with self.assertRaisesRegex(AudioDataError, pattern) as caught:
            self._prepare(manual_dir)
        self.assertLess(time.monotonic() - start, 10)
        self.assertNotIn("\n", str(caught.exception))
        return str(caught.exception)

    def test_empty_manual_dir_fails_at_once_naming_it(self):
        empty = pathlib.Path(self.tmp_dir) / "empty_manual"
        empty.mkdir()
        with mock.patch.object(tfds.download.DownloadManager, "download_and_extract") as dl:
            self._assert_fails_fast(f"{empty} holds no {self.EMPTY_MANUAL_MESSAGE}", empty)
        dl.assert_not_called()

    def offline_message(self):
        """The error of a download attempt on a machine that cannot resolve `HOST`."""
        offline = requests.ConnectionError(f"Failed to resolve '{self.HOST}'")
        with mock.patch.object(common.requests, "head", side_effect=offline), \
                mock.patch.object(tfds.download.DownloadManager, "download_and_extract") as dl:
            message = self._assert_fails_fast(f"cannot download {self.BUILDER.TITLE}")
        dl.assert_not_called()
        self.assertIn(self.BUILDER.URL, message)
        self.assertIn(f"{self.tmp_dir}/downloads/manual/", message)
        return message


def resampled_reference(path, rate):
    """A source file as a clip at `rate` should begin, computed apart from `audio_io`:
    its channels averaged, resampled with soxr's HQ quality (what librosa's
    "soxr_hq" runs) to `ceil(frames * rate / file rate)` samples, as int16."""
    data, file_rate = sf.read(path, dtype="float64", always_2d=True)
    mono = data.mean(axis=1)
    length = -(-len(mono) * rate // file_rate)
    if file_rate != rate:
        mono = soxr.resample(mono, file_rate, rate, quality="HQ")
    mono = np.pad(mono, (0, max(0, length - len(mono))))[:length]
    return np.clip(np.round(mono * 32768), -32768, 32767).astype(np.int16)


class ResampledClipChecks:
    """Mixed into a `DatasetBuilderTestCase` of configs at other rates than their
    source files: after TFDS's own checks, the config's clips must hold
    `CLIP_SECONDS * sample_rate` samples, begin with their source file resampled to
    the config's rate (`resampled_reference`, within 1 of 32768) and be silent after
    it. Subclasses set `CLIP_SECONDS` and `source_path(example)`, the file in
    `EXAMPLE_DIR` an example was made from.
    """

    CLIP_SECONDS = None

    def source_path(self, example):
        raise NotImplementedError

    def _download_and_prepare_as_dataset(self, builder):
        super()._download_and_prepare_as_dataset(builder)
        rate = builder.builder_config.sample_rate
        length = self.CLIP_SECONDS * rate
        audio = builder.info.features["audio"]
        self.assertEqual((audio.sample_rate, audio.shape), (rate, (length,)))
        resampled = 0
        every_split = "+".join(builder.info.splits)  # One reading: TFDS's are many.
        for example in tfds.as_numpy(builder.as_dataset(split=every_split)):
            path = self.source_path(example)
            expected = resampled_reference(path, rate)
            clip = example["audio"]
            self.assertEqual((clip.dtype, clip.shape), (np.int16, (length,)))
            np.testing.assert_allclose(clip[: len(expected)], expected, atol=1,
                                       err_msg=str(path))
            self.assertFalse(np.any(clip[len(expected):]), path)
            resampled += sf.info(path).samplerate != rate
        self.assertGreater(resampled, 0)  # The files are not all at the config's rate.
