"""Tests of the esc50 builder on `dummy_data/` (made by `fake_data.py`).

dummy_data/ holds 3 classes x 5 folds of 10 ms clips, in both manual layouts:
  manual_zip/ESC-50-master.zip
  manual_folder/ESC-50-master/{meta/esc50.csv,audio/*.wav}
The layouts are tested with the default config, 44100hz; the other rates with the
folder (the same files: the config changes only the rate they are resampled to).
"""

import pathlib
import shutil
import tempfile
from unittest import mock

from absl.testing import parameterized
import numpy as np
import soundfile as sf
import tensorflow_datasets as tfds

from tfds_builders import common, testing
from tfds_builders.audio_io import AudioDataError, load_clip
from tfds_builders.esc50 import esc50_dataset_builder, fake_data

_DUMMY_DATA = pathlib.Path(__file__).parent / "dummy_data"
_SPLITS = {f"fold{fold}": len(fake_data.DUMMY_CLASSES) for fold in range(1, 6)}
_RATE = esc50_dataset_builder.SAMPLE_RATE
_LENGTH = esc50_dataset_builder.NUM_SAMPLES


class Esc50ManualZipTest(tfds.testing.DatasetBuilderTestCase):
    """manual_dir holds the archive `ESC-50-master.zip`."""

    DATASET_CLASS = esc50_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["44100hz"]
    EXAMPLE_DIR = str(_DUMMY_DATA / "manual_zip")
    SPLITS = _SPLITS


class Esc50ManualFolderTest(tfds.testing.DatasetBuilderTestCase):
    """manual_dir holds the extracted folder `ESC-50-master/`."""

    DATASET_CLASS = esc50_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["44100hz"]
    EXAMPLE_DIR = str(_DUMMY_DATA / "manual_folder")
    SPLITS = _SPLITS


class Esc50ResampledTest(testing.ResampledClipChecks, tfds.testing.DatasetBuilderTestCase):
    """The 32000hz and 16000hz configs from `ESC-50-master/`: its files resampled."""

    DATASET_CLASS = esc50_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["32000hz", "16000hz"]
    EXAMPLE_DIR = str(_DUMMY_DATA / "manual_folder")
    SPLITS = _SPLITS
    CLIP_SECONDS = esc50_dataset_builder.CLIP_SECONDS

    def source_path(self, example):
        return _DUMMY_DATA / "manual_folder/ESC-50-master/audio" / example["filename"].decode()


class Esc50DownloadTest(tfds.testing.DatasetBuilderTestCase):
    """No manual copy: the archive is downloaded (mocked) and its data root found."""

    DATASET_CLASS = esc50_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["44100hz"]
    EXAMPLE_DIR = str(_DUMMY_DATA)  # The manual_dir: neither layout at its top.
    DL_EXTRACT_RESULT = "manual_folder"  # Holds ESC-50-master/, like ESC-50-<sha>/.
    SKIP_CHECKSUMS = True  # No checksum of the pinned archive is recorded yet.
    SPLITS = _SPLITS

    def setUp(self):
        super().setUp()
        probe = mock.patch.object(common, "probe")
        probe.start()
        self.patchers.append(probe)


def _tone(seconds, rate, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * 1000.0 * t)
    return np.repeat(wave[:, None], channels, axis=1)


class LoadClipTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = pathlib.Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir)

    @parameterized.named_parameters(
        ("pcm_u8", "WAV", "PCM_U8", _RATE, 1),
        ("pcm_16", "WAV", "PCM_16", _RATE, 1),
        ("pcm_24", "WAV", "PCM_24", _RATE, 1),
        ("pcm_32", "WAV", "PCM_32", _RATE, 1),
        ("float", "WAV", "FLOAT", _RATE, 1),
        ("double", "WAV", "DOUBLE", _RATE, 1),
        ("stereo", "WAV", "PCM_16", _RATE, 2),
        ("extensible_6ch", "WAVEX", "PCM_24", _RATE, 6),
        ("rate_22050", "WAV", "PCM_16", 22050, 1),
        ("rate_48000", "WAV", "FLOAT", 48000, 1),
    )
    def test_encoding_decodes_to_5s_int16(self, file_format, subtype, rate, channels):
        path = self.dir / f"clip_{subtype}_{rate}_{channels}.wav"
        sf.write(path, _tone(0.1, rate, channels), rate, subtype=subtype, format=file_format)
        clip = load_clip(path, _RATE, _LENGTH)
        self.assertEqual(clip.dtype, np.int16)
        self.assertEqual(clip.shape, (_LENGTH,))
        expected = np.round(_tone(0.1, _RATE)[:, 0] * 32768)
        inner = slice(200, len(expected) - 200)  # Away from resampling edges.
        np.testing.assert_allclose(clip[inner], expected[inner], atol=400)
        self.assertFalse(np.any(clip[len(expected) + 200 :]))  # Zero padding.

    def test_16bit_at_target_rate_round_trips_exactly(self):
        samples = np.random.default_rng(0).integers(-32768, 32768, _LENGTH, dtype=np.int16)
        path = self.dir / "exact.wav"
        sf.write(path, samples, _RATE, subtype="PCM_16")
        np.testing.assert_array_equal(load_clip(path, _RATE, _LENGTH), samples)
        with path.open("rb") as audio_file:  # The builder passes file objects.
            np.testing.assert_array_equal(load_clip(audio_file, _RATE, _LENGTH), samples)

    def test_short_file_is_padded_and_long_file_trimmed(self):
        samples = np.random.default_rng(1).integers(-32768, 32768, _LENGTH + 500, dtype=np.int16)
        sf.write(self.dir / "short.wav", samples[:1000], _RATE, subtype="PCM_16")
        sf.write(self.dir / "long.wav", samples, _RATE, subtype="PCM_16")
        short = load_clip(self.dir / "short.wav", _RATE, _LENGTH)
        np.testing.assert_array_equal(short[:1000], samples[:1000])
        self.assertFalse(np.any(short[1000:]))
        np.testing.assert_array_equal(load_clip(self.dir / "long.wav", _RATE, _LENGTH), samples[:_LENGTH])

    def test_corrupt_file_raises_naming_it(self):
        path = self.dir / "corrupt.wav"
        path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really audio")
        with self.assertRaisesRegex(AudioDataError, "corrupt.wav") as caught:
            load_clip(path, _RATE, _LENGTH)
        self.assertIn(str(path), str(caught.exception))
        self.assertNotIn("\n", str(caught.exception))


class BuilderErrorTest(testing.ArchiveBuilderErrorTestCase):
    """Data problems surface as one-line `AudioDataError`s naming the path."""

    BUILDER = esc50_dataset_builder.Builder
    HOST = "github.com"
    EMPTY_MANUAL_MESSAGE = "ESC-50-master.zip or ESC-50-master/"

    def _fake(self, **kwargs):
        manual_dir = pathlib.Path(self.tmp_dir) / "manual"
        top = fake_data.write_fake_esc50(manual_dir, classes=(0, 1), seconds=0.01, **kwargs)
        return manual_dir, top

    def test_offline_without_manual_copy_fails_fast_with_url_and_path(self):
        message = self.offline_message()
        self.assertIn(f"{self.tmp_dir}/downloads/manual/ESC-50-master.zip", message)

    def test_category_not_matching_labels_txt(self):
        manual_dir, top = self._fake()
        csv_path = top / "meta" / "esc50.csv"
        csv_path.write_text(csv_path.read_text().replace(",0,dog,", ",0,cat,", 1))
        self._assert_fails_fast(r"category 'cat' but target 0 is 'dog'", manual_dir)

    def test_listed_file_missing(self):
        manual_dir, top = self._fake()
        missing = sorted((top / "audio").iterdir())[3]
        missing.unlink()
        self._assert_fails_fast(f"missing, first {missing}", manual_dir)

    def test_corrupt_file_in_dataset(self):
        manual_dir, top = self._fake()
        corrupt = sorted((top / "audio").iterdir())[0]
        corrupt.write_bytes(b"this is not a wav file")
        self._assert_fails_fast(f"cannot decode audio file {corrupt}", manual_dir)

    def test_zip_without_metadata(self):
        manual_dir = pathlib.Path(self.tmp_dir) / "manual"
        manual_dir.mkdir()
        fake_data._write_zip(manual_dir / "ESC-50-master.zip", {"README.md": b"hi"})
        self._assert_fails_fast("no meta/esc50.csv", manual_dir)


class FakeDataTest(parameterized.TestCase):
    def test_deterministic_and_in_the_real_layout(self):
        with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
            a = fake_data.write_fake_esc50(first, classes=(3, 7), as_zip=True)
            b = fake_data.write_fake_esc50(second, classes=(3, 7), as_zip=True)
            self.assertEqual(a.name, "ESC-50-master.zip")
            self.assertEqual(a.read_bytes(), b.read_bytes())
            top = fake_data.write_fake_esc50(first, classes=(3,), clips_per_fold_per_class=2)
            names = sorted(p.name for p in (top / "audio").iterdir())
            self.assertEqual(names[:2], ["1-100301-A-3.wav", "1-100301-B-3.wav"])
            self.assertTrue((top / "meta" / "esc50.csv").exists())


if __name__ == "__main__":
    tfds.testing.test_main()
