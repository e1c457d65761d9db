"""Test helpers shared by the builders' tests (import the module, not its classes)."""

import pathlib
import time
from unittest import mock

import requests
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
