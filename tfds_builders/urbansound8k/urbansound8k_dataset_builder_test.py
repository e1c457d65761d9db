"""Tests of the urbansound8k builder on `dummy_data/` and on fake data (`fake_data.py`).

dummy_data/ holds classes 2 and 3 x 10 folds of 10 ms clips in all 11 encodings of
`fake_data.ENCODINGS`, in both manual layouts:
  manual_tar/UrbanSound8K.tar.gz
  manual_folder/UrbanSound8K/{metadata/UrbanSound8K.csv,audio/fold*/*.wav}
The layouts are tested with the default config, 22050hz; the other rates with the
folder (the same files: the config changes only the rate they are resampled to).
"""

import collections
import csv
import pathlib
import shutil
import tempfile

import numpy as np
import soundfile as sf
import tensorflow_datasets as tfds

from tfds_builders import testing
from tfds_builders.urbansound8k import fake_data, urbansound8k_dataset_builder

_DUMMY_DATA = pathlib.Path(__file__).parent / "dummy_data"
_SPLITS = {f"fold{fold}": len(fake_data.DUMMY_CLASSES) for fold in range(1, 11)}
Builder = urbansound8k_dataset_builder.Builder


class Urbansound8kManualTarTest(tfds.testing.DatasetBuilderTestCase):
    """manual_dir holds the archive `UrbanSound8K.tar.gz`."""

    DATASET_CLASS = Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["22050hz"]
    EXAMPLE_DIR = str(_DUMMY_DATA / "manual_tar")
    SPLITS = _SPLITS


class Urbansound8kManualFolderTest(tfds.testing.DatasetBuilderTestCase):
    """manual_dir holds the extracted folder `UrbanSound8K/` (44100hz: see below)."""

    DATASET_CLASS = Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["22050hz"]
    EXAMPLE_DIR = str(_DUMMY_DATA / "manual_folder")
    SPLITS = _SPLITS


class Urbansound8kResampledTest(testing.ResampledClipChecks, tfds.testing.DatasetBuilderTestCase):
    """The 16000hz and 32000hz configs from `UrbanSound8K/`: files of 8 to 192 kHz,
    resampled, and those already at the config's rate (16 kHz, 32 kHz) only scaled."""

    DATASET_CLASS = Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["16000hz", "32000hz"]
    EXAMPLE_DIR = str(_DUMMY_DATA / "manual_folder")
    SPLITS = _SPLITS
    CLIP_SECONDS = urbansound8k_dataset_builder.CLIP_SECONDS

    def source_path(self, example):
        folder = _DUMMY_DATA / "manual_folder/UrbanSound8K/audio" / f"fold{example['fold']}"
        return folder / example["filename"].decode()


def _read_csv(top):
    with open(top / fake_data.CSV_NAME, newline="") as table:
        return {row["slice_file_name"]: row for row in csv.DictReader(table)}


def _examples(builder):
    """{filename: example as numpy} over all 10 folds, with the split's fold number."""
    examples = {}
    for fold in range(1, 11):
        for example in tfds.as_numpy(builder.as_dataset(split=f"fold{fold}")):
            filename = example["filename"].decode()
            assert filename not in examples, f"{filename} is in two splits"
            examples[filename] = {**example, "split_fold": fold}
    return examples


class FakeDataBuildTest(tfds.testing.TestCase):
    """One build of fake data (4 classes x 10 folds x 2 slices, all encodings) at 22050 Hz."""

    SECONDS = 0.05

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.dir = pathlib.Path(tempfile.mkdtemp())
        manual_dir = cls.dir / "manual"
        cls.top = fake_data.write_fake_urbansound8k(
            manual_dir, classes=(0, 1, 6, 9), clips_per_fold_per_class=2, seconds=cls.SECONDS
        )
        cls.rows = _read_csv(cls.top)
        builder = Builder(data_dir=str(cls.dir / "data"))
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
        )
        cls.info = builder.info
        cls.examples = _examples(builder)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)
        super().tearDownClass()

    def test_features_and_default_config(self):
        self.assertEqual(self.info.config_name, "22050hz")
        self.assertEqual(self.info.features["audio"].shape, (88200,))
        self.assertEqual(self.info.features["audio"].sample_rate, 22050)
        self.assertEqual(self.info.supervised_keys, ("audio", "label"))
        self.assertEqual(
            self.info.features["label"].names,
            (pathlib.Path(fake_data.__file__).with_name("labels.txt")).read_text().split(),
        )
        self.assertEqual(sorted(self.info.splits), sorted(f"fold{f}" for f in range(1, 11)))
        self.assertIn("Salamon", self.info.citation)
        self.assertIn("10 folds", self.info.description)

    def test_every_encoding_decodes_to_4s_with_its_label_and_fold(self):
        self.assertEqual(sorted(self.examples), sorted(self.rows))
        seen = collections.Counter()
        length = round(self.SECONDS * 22050)
        for filename, example in self.examples.items():
            row = self.rows[filename]
            info = sf.info(self.top / "audio" / f"fold{row['fold']}" / filename)
            encoding = (info.format, info.subtype, info.channels, info.samplerate)
            seen[encoding] += 1
            with self.subTest(filename=filename, encoding=encoding):
                audio = example["audio"]
                self.assertEqual(audio.dtype, np.int16)
                self.assertEqual(audio.shape, (88200,))
                self.assertEqual(example["label"], int(row["classID"]))
                self.assertEqual(example["fold"], int(row["fold"]))
                self.assertFalse(np.any(audio[length + 8 :]))  # Zero-padded to 4 s.
                # The class's tone survives decoding: the spectrum peaks at it.
                clip = audio[:length].astype(np.float64)
                spectrum = np.abs(np.fft.rfft(clip * np.hanning(length), 8 * length))
                peak = np.argmax(spectrum) * 22050 / (8 * length)
                expected = fake_data.class_frequency(int(row["classID"]))
                self.assertAlmostEqual(peak, expected, delta=15.0)
                self.assertGreater(np.abs(clip).max(), 0.25 * 32768)
        expected = {
            (e.container, e.subtype, e.channels, e.rate) for e in fake_data.ENCODINGS
        }
        self.assertEqual(set(seen), expected)

    def test_other_features_match_the_csv(self):
        for filename, example in self.examples.items():
            row = self.rows[filename]
            self.assertEqual(example["fsID"], int(row["fsID"]))
            self.assertEqual(example["salience"], int(row["salience"]))
            self.assertAlmostEqual(example["start"], float(row["start"]), places=4)
            self.assertAlmostEqual(example["end"], float(row["end"]), places=4)
            self.assertEqual(example["start"].dtype, np.float32)

    def test_fold_hygiene(self):
        csv_folds_of_fsid = collections.defaultdict(set)
        for row in self.rows.values():
            csv_folds_of_fsid[int(row["fsID"])].add(int(row["fold"]))
        folds_of_fsid = collections.defaultdict(set)
        slices_of_fsid = collections.Counter()
        for filename, example in self.examples.items():
            # The split, the feature and the CSV agree on the fold.
            self.assertEqual(example["split_fold"], example["fold"])
            self.assertEqual(example["fold"], int(self.rows[filename]["fold"]))
            folds_of_fsid[int(example["fsID"])].add(int(example["fold"]))
            slices_of_fsid[int(example["fsID"])] += 1
        # No recording spans folds unless the CSV says so (it never does here).
        self.assertEqual(folds_of_fsid, csv_folds_of_fsid)
        self.assertTrue(all(len(folds) == 1 for folds in folds_of_fsid.values()))
        # The data is a real test of it: recordings contribute several slices.
        self.assertGreater(max(slices_of_fsid.values()), 1)

    def test_44100hz_config(self):
        manual_dir = _DUMMY_DATA / "manual_folder"
        builder = Builder(config="44100hz", data_dir=str(self.dir / "data"))
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
        )
        self.assertEqual(builder.info.features["audio"].shape, (176400,))
        self.assertEqual(builder.info.features["audio"].sample_rate, 44100)
        examples = _examples(builder)
        self.assertLen(examples, sum(_SPLITS.values()))
        rows = _read_csv(manual_dir / "UrbanSound8K")
        exact = 0
        for filename, example in examples.items():
            self.assertEqual(example["audio"].shape, (176400,))
            self.assertEqual(example["label"], int(rows[filename]["classID"]))
            path = manual_dir / "UrbanSound8K" / "audio" / f"fold{example['fold']}" / filename
            info = sf.info(path)
            if (info.subtype, info.channels, info.samplerate) == ("PCM_16", 1, 44100):
                # Already at the config's rate: stored bit-exactly, no resampling.
                original = sf.read(path, dtype="int16")[0]
                np.testing.assert_array_equal(example["audio"][: len(original)], original)
                exact += 1
        self.assertGreater(exact, 0)


class BuilderErrorTest(testing.ArchiveBuilderErrorTestCase):
    """Data problems surface as one-line `AudioDataError`s naming the path."""

    BUILDER = Builder
    HOST = "zenodo.org"
    EMPTY_MANUAL_MESSAGE = "UrbanSound8K.tar.gz or UrbanSound8K/"

    def _fake(self):
        manual_dir = pathlib.Path(self.tmp_dir) / "manual"
        top = fake_data.write_fake_urbansound8k(
            manual_dir, classes=(0, 1), folds=(1, 2), seconds=0.01
        )
        return manual_dir, top

    def _edit_csv(self, top, old, new):
        csv_path = top / fake_data.CSV_NAME
        text = csv_path.read_text()
        self.assertIn(old, text)
        csv_path.write_text(text.replace(old, new, 1))
        return csv_path

    def test_offline_without_manual_copy_fails_fast_with_url_and_path(self):
        message = self.offline_message()
        self.assertIn(f"{self.tmp_dir}/downloads/manual/UrbanSound8K.tar.gz", message)

    def test_corrupt_file_in_dataset_is_named(self):
        manual_dir, top = self._fake()
        corrupt = sorted((top / "audio" / "fold2").glob("*.wav"))[0]
        corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really audio")
        self._assert_fails_fast(f"cannot decode audio file {corrupt}", manual_dir)

    def test_class_not_matching_class_id(self):
        manual_dir, top = self._fake()
        csv_path = self._edit_csv(top, ",0,air_conditioner", ",0,car_horn")
        message = self._assert_fails_fast(
            r"line 2: 100100-0-0-0.wav has class 'car_horn' but classID 0 is 'air_conditioner'",
            manual_dir,
        )
        self.assertIn(str(csv_path), message)

    def test_fold_out_of_range(self):
        manual_dir, top = self._fake()
        row = "100200-1-0-0.wav,100200,60.0,60.01,2,{},1,car_horn"
        self._edit_csv(top, row.format(2), row.format(11))
        self._assert_fails_fast(r"line 5: 100200-1-0-0.wav has fold 11, outside 1..10", manual_dir)

    def test_listed_file_missing_from_its_fold(self):
        manual_dir, top = self._fake()
        listed = top / "audio" / "fold2" / "100200-0-0-0.wav"
        listed.rename(top / "audio" / "fold1" / listed.name)  # In the wrong fold.
        self._assert_fails_fast(
            rf"1 audio file\(s\) .* missing, first {listed} \(line 4\)", manual_dir
        )

    def test_duplicate_row(self):
        manual_dir, top = self._fake()
        csv_path = top / fake_data.CSV_NAME
        lines = csv_path.read_text().splitlines(keepends=True)
        csv_path.write_text("".join(lines + lines[1:2]))
        self._assert_fails_fast(
            r"line 6: 100100-0-0-0.wav is listed again \(first on line 2\)", manual_dir
        )

    def test_tar_without_metadata(self):
        manual_dir = pathlib.Path(self.tmp_dir) / "manual"
        manual_dir.mkdir()
        fake_data.write_tar_gz(manual_dir / "UrbanSound8K.tar.gz", {"README.txt": b"hi"})
        self._assert_fails_fast("no metadata/UrbanSound8K.csv", manual_dir)


class FakeDataTest(tfds.testing.TestCase):
    def test_deterministic_and_in_the_real_layout(self):
        with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
            a = fake_data.write_fake_urbansound8k(first, classes=(3, 8), folds=(4, 9), as_tar=True)
            b = fake_data.write_fake_urbansound8k(second, classes=(3, 8), folds=(4, 9), as_tar=True)
            self.assertEqual(a.name, "UrbanSound8K.tar.gz")
            self.assertEqual(a.read_bytes(), b.read_bytes())
            top = fake_data.write_fake_urbansound8k(first, classes=(3,), clips_per_fold_per_class=5)
            self.assertEqual(top, pathlib.Path(first) / "UrbanSound8K")
            self.assertEqual(
                sorted(p.name for p in (top / "audio" / "fold5").glob("*.wav")),
                [f"100501-3-{occurrence}-{s}.wav" for occurrence, s in
                 ((0, 0), (0, 1), (0, 2), (0, 3), (1, 0))],
            )
            self.assertEqual(
                sorted(p.name for p in (top / "audio").iterdir()),
                sorted(f"fold{f}" for f in range(1, 11)),
            )
            header = (top / fake_data.CSV_NAME).read_text().splitlines()[0]
            self.assertEqual(header, "slice_file_name,fsID,start,end,salience,fold,classID,class")

    def test_float_files_carry_no_write_time(self):
        with tempfile.TemporaryDirectory() as root:
            top = fake_data.write_fake_urbansound8k(root, classes=(0,))
            floats = [p for p in top.glob("audio/*/*.wav") if sf.info(p).subtype == "FLOAT"]
            self.assertNotEmpty(floats)
            for path in floats:
                data = path.read_bytes()
                peak = data.index(b"PEAK")
                self.assertEqual(data[peak + 12 : peak + 16], bytes(4))

    def test_clip_does_not_depend_on_other_classes(self):
        with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
            alone = fake_data.write_fake_urbansound8k(first, classes=(5,), folds=(3,))
            mixed = fake_data.write_fake_urbansound8k(second, classes=(2, 5), folds=(1, 3))
            name = "audio/fold3/100302-5-0-0.wav"
            self.assertEqual((alone / name).read_bytes(), (mixed / name).read_bytes())


if __name__ == "__main__":
    tfds.testing.test_main()
