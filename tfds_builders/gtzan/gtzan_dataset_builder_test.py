"""Tests of the gtzan builder on `dummy_data/` (made by `fake_data.py`).

dummy_data/ holds 2 clips of each genre (`fake_data.DUMMY_IDS`, each in a
fault-filtered list) as 10 ms clips, in both manual layouts:
  manual_tar/genres.tar.gz                     genres/<genre>/<genre>.NNNNN.au
  manual_genres_original/genres_original/...   <genre>/<genre>.NNNNN.wav, plus a
                                               corrupt jazz.00054.wav (listed in train)
The layouts are tested with the configs at 22050 Hz (`folds`, `fault_filtered`); the
other rates with the WAV folder (the same files, resampled).
"""

import collections
import pathlib
import random
import shutil
import tempfile
from unittest import mock

from absl.testing import parameterized
import numpy as np
import soundfile as sf
import tensorflow_datasets as tfds

from tfds_builders import common, testing
from tfds_builders.audio_io import AudioDataError, load_clip
from tfds_builders.gtzan import fake_data, gtzan_dataset_builder as gtzan

_DUMMY_DATA = pathlib.Path(__file__).parent / "dummy_data"
# 20 ids dealt into 10 folds; in genres_original the corrupt jazz.00054 takes a
# third place in fold1 and is skipped, so the counts are the same.
_FOLD_SPLITS = {f"fold{fold}": 2 for fold in range(1, 11)}
# Genre k holds the first id of list k % 3 and of list (k + 1) % 3.
_FAULT_FILTERED_SPLITS = {"train": 7, "valid": 7, "test": 6}
_ALL_IDS = [f"{genre}.{n:05d}" for genre in gtzan.GENRES for n in range(100)]


class _GtzanChecks:
    """Mixed into a `DatasetBuilderTestCase`: checks TFDS's own test does not make.

    Every prepared config is also checked for the skipped-file record (on the
    builder and on a fresh one reading the disk), a warning naming each skipped
    file, the `fold` feature, no file in two splits, and exactly the expected ids.
    """

    DATASET_CLASS = gtzan.Builder
    SOURCE_IDS = fake_data.DUMMY_IDS  # Decodable clips of the source.
    SKIPPED = []  # File names the build must skip, warn about and record.

    def test_registered(self):
        # TFDS's check would pass on TFDS's own gtzan: ours is kept out (CatalogTest).
        self.assertEqual(self.builder.name, "gtzan")
        self.assertIsNot(tfds.builder_cls("gtzan"), gtzan.Builder)

    def _download_and_prepare_as_dataset(self, builder):
        with mock.patch.object(gtzan.logging, "warning") as warning:
            super()._download_and_prepare_as_dataset(builder)
        logged = [call.args[0] % call.args[1:] for call in warning.call_args_list]
        self.assertEqual(
            [line.split()[2] for line in logged if line.startswith("GTZAN: skipped ")],
            self.SKIPPED,
        )

        # The record of skipped files survives on disk: a fresh builder reads it.
        reloaded = self._make_builder(config=builder.builder_config)
        self.assertEqual(gtzan.skipped_files(builder), self.SKIPPED)
        self.assertEqual(gtzan.skipped_files(reloaded), self.SKIPPED)

        filenames = {}  # split -> filenames
        for split in self.SPLITS:
            ds = reloaded.as_dataset(split=split, decoders={"audio": tfds.decode.SkipDecoding()})
            rows = [(ex["filename"].decode(), int(ex["fold"])) for ex in tfds.as_numpy(ds)]
            filenames[split] = {name for name, _ in rows}
            expected_fold = int(split[4:]) if split.startswith("fold") else 0
            self.assertEqual({fold for _, fold in rows}, {expected_fold})
        all_names = [name for names in filenames.values() for name in names]
        self.assertEqual(len(all_names), len(set(all_names)), "a file is in two splits")

        source_ids = set(self.SOURCE_IDS)
        if builder.builder_config.protocol == "folds":
            expected_ids = source_ids
            # Folds are dealt from every file found, the undecodable ones included,
            # so skipping a file moved no other clip.
            folds = gtzan.assign_folds(source_ids | {_id(name) for name in self.SKIPPED})
            for split, names in filenames.items():
                self.assertEqual({folds[_id(name)] for name in names}, {int(split[4:])})
            self.assertEqual(gtzan.missing_ids(reloaded), [])
        else:
            listed = {i for ids in gtzan.read_fault_filtered().values() for i in ids}
            expected_ids = source_ids & listed
            num_missing = 930 - len(expected_ids) - len(self.SKIPPED)
            self.assertLen(gtzan.missing_ids(reloaded), num_missing)
        self.assertEqual({_id(name) for name in all_names}, expected_ids)


class CatalogTest(parameterized.TestCase):
    def test_tfds_keeps_its_own_gtzan_and_loads_its_whole_catalog(self):
        # Registering ours as "gtzan" made TFDS's catalog import fail with "Dataset with
        # name gtzan already registered" (a logged traceback, and the catalog's modules
        # after audio/ never loaded): ours stays out of the registry, made by class.
        from tensorflow_datasets.core import registered

        import tfds_builders

        self.assertIsNot(tfds.builder_cls("gtzan"), gtzan.Builder)
        registered._import_legacy_builders()  # what tfds.builder(<unknown name>) does
        self.assertIn("spoken_digit", tfds.list_builders(with_community_datasets=False))
        ours = tfds_builders.builder("gtzan/fault_filtered", data_dir="/nonexistent/tfds")
        self.assertIsInstance(ours, gtzan.Builder)
        self.assertEqual((ours.name, ours.builder_config.name), ("gtzan", "fault_filtered"))


def _id(filename):
    """The clip id of a file name: jazz.00054.wav -> jazz.00054."""
    return filename.rsplit(".", 1)[0]


class GtzanFoldsArchiveTest(_GtzanChecks, tfds.testing.DatasetBuilderTestCase):
    """folds from the manual archive `genres.tar.gz` (.au files)."""

    BUILDER_CONFIG_NAMES_TO_TEST = ["folds"]
    EXAMPLE_DIR = str(_DUMMY_DATA / "manual_tar")
    SPLITS = _FOLD_SPLITS


class GtzanFaultFilteredArchiveTest(_GtzanChecks, tfds.testing.DatasetBuilderTestCase):
    """fault_filtered from the manual archive `genres.tar.gz` (.au files)."""

    BUILDER_CONFIG_NAMES_TO_TEST = ["fault_filtered"]
    EXAMPLE_DIR = str(_DUMMY_DATA / "manual_tar")
    SPLITS = _FAULT_FILTERED_SPLITS


class GtzanFaultFilteredWavTest(_GtzanChecks, tfds.testing.DatasetBuilderTestCase):
    """fault_filtered from the manual folder `genres_original/` (.wav, one corrupt)."""

    BUILDER_CONFIG_NAMES_TO_TEST = ["fault_filtered"]
    EXAMPLE_DIR = str(_DUMMY_DATA / "manual_genres_original")
    SPLITS = _FAULT_FILTERED_SPLITS
    SKIPPED = ["jazz.00054.wav"]


class GtzanFoldsDownloadTest(_GtzanChecks, tfds.testing.DatasetBuilderTestCase):
    """No manual copy: the archive is downloaded (mocked) and its data root found.

    The mocked extraction is the genres_original/ WAV folder (one corrupt file),
    so this also covers folds on that layout.
    """

    BUILDER_CONFIG_NAMES_TO_TEST = ["folds"]
    EXAMPLE_DIR = str(_DUMMY_DATA)  # The manual_dir: neither layout at its top.
    DL_EXTRACT_RESULT = "manual_genres_original"  # Holds genres_original/.
    SPLITS = _FOLD_SPLITS
    SKIPPED = ["jazz.00054.wav"]

    def setUp(self):
        super().setUp()
        probe = mock.patch.object(common, "probe")
        probe.start()
        self.patchers.append(probe)


class _Resampled(testing.ResampledClipChecks):
    CLIP_SECONDS = gtzan.CLIP_SECONDS

    def source_path(self, example):
        name = example["filename"].decode()
        return _DUMMY_DATA / "manual_genres_original/genres_original" / name.split(".")[0] / name


class GtzanFoldsResampledTest(_GtzanChecks, _Resampled, tfds.testing.DatasetBuilderTestCase):
    """folds_16000hz and folds_32000hz from `genres_original/`: its files resampled."""

    BUILDER_CONFIG_NAMES_TO_TEST = ["folds_16000hz", "folds_32000hz"]
    EXAMPLE_DIR = str(_DUMMY_DATA / "manual_genres_original")
    SPLITS = _FOLD_SPLITS
    SKIPPED = ["jazz.00054.wav"]


class GtzanFaultFilteredResampledTest(_GtzanChecks, _Resampled,
                                      tfds.testing.DatasetBuilderTestCase):
    """fault_filtered_16000hz and fault_filtered_32000hz from `genres_original/`."""

    BUILDER_CONFIG_NAMES_TO_TEST = ["fault_filtered_16000hz", "fault_filtered_32000hz"]
    EXAMPLE_DIR = str(_DUMMY_DATA / "manual_genres_original")
    SPLITS = _FAULT_FILTERED_SPLITS
    SKIPPED = ["jazz.00054.wav"]


class FaultFilteredListsTest(parameterized.TestCase):
    def test_disjoint_lists_of_443_197_290_ids(self):
        lists = gtzan.read_fault_filtered()
        self.assertEqual({split: len(ids) for split, ids in lists.items()},
                         {"train": 443, "valid": 197, "test": 290})
        every = [i for ids in lists.values() for i in ids]
        self.assertLen(set(every), 930)
        self.assertContainsSubset(every, _ALL_IDS)

    def test_labels_file_lists_the_genres(self):
        self.assertEqual(tuple(gtzan._LABELS_PATH.read_text().split()), gtzan.GENRES)
        self.assertEqual(fake_data.GENRES, gtzan.GENRES)


class FoldAssignmentTest(parameterized.TestCase):
    def test_stratified_and_balanced(self):
        folds = gtzan.assign_folds(_ALL_IDS)
        counts = collections.Counter((i.split(".")[0], fold) for i, fold in folds.items())
        self.assertEqual(set(counts.values()), {10})  # 10 of each genre in each fold.
        self.assertLen(counts, 100)
        small = gtzan.assign_folds([f"{g}.{n:05d}" for g in gtzan.GENRES for n in range(20)])
        counts = collections.Counter((i.split(".")[0], fold) for i, fold in small.items())
        self.assertEqual(set(counts.values()), {2})
        self.assertLen(counts, 100)

    def test_independent_of_listing_order(self):
        shuffled = list(_ALL_IDS)
        random.Random(3).shuffle(shuffled)
        self.assertEqual(gtzan.assign_folds(shuffled), gtzan.assign_folds(_ALL_IDS))
        self.assertEqual(gtzan.assign_folds(reversed(_ALL_IDS)), gtzan.assign_folds(_ALL_IDS))

    def test_fixed_across_machines(self):
        # Pinned: these numbers must never change, or published fold results move.
        folds = gtzan.assign_folds(_ALL_IDS)
        self.assertEqual([folds[f"blues.{n:05d}"] for n in range(12)],
                         [2, 8, 4, 6, 3, 10, 4, 9, 3, 8, 9, 5])
        self.assertEqual(folds["jazz.00054"], 1)


class DecodingTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("au_a_few_samples_short", "genres", -7),
        ("wav_a_few_samples_long", "genres_original", 5),
    )
    def test_clip_decodes_to_661500_samples(self, layout, extra):
        length = gtzan.NUM_SAMPLES + extra
        with tempfile.TemporaryDirectory() as tmp:
            top = fake_data.write_fake_gtzan(
                tmp, genres=("rock",), clips_per_genre=1, layout=layout,
                seconds=length / gtzan.SAMPLE_RATE,
            )
            (path,) = (top / "rock").iterdir()
            self.assertEqual(path.suffix, ".au" if layout == "genres" else ".wav")
            source, rate = sf.read(path, dtype="int16")
            self.assertEqual((len(source), rate), (length, gtzan.SAMPLE_RATE))
            with path.open("rb") as audio_file:
                clip = load_clip(audio_file, gtzan.SAMPLE_RATE, gtzan.NUM_SAMPLES)
        self.assertEqual((clip.dtype, clip.shape), (np.int16, (gtzan.NUM_SAMPLES,)))
        kept = min(length, gtzan.NUM_SAMPLES)
        np.testing.assert_array_equal(clip[:kept], source[:kept])  # Bit-exact.
        self.assertFalse(np.any(clip[kept:]))  # Zero padding.


class DataRootTest(parameterized.TestCase):
    """Both layouts and their data roots; data problems are one-line errors."""

    def setUp(self):
        super().setUp()
        self.tmp_dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.tmp_dir)

    def _builder(self):
        return gtzan.Builder(data_dir=self.tmp_dir)

    @parameterized.parameters("genres", "genres_original")
    def test_root_is_the_folder_of_genre_folders(self, layout):
        top = fake_data.write_fake_gtzan(pathlib.Path(self.tmp_dir) / layout, clips_per_genre=1,
                                         layout=layout)
        self.assertEqual(self._builder()._data_root(top, "test"), top)
        self.assertEqual(self._builder()._data_root(top.parent, "test"), top)

    def test_missing_genre_folder_is_named(self):
        top = fake_data.write_fake_gtzan(self.tmp_dir, clips_per_genre=1,
                                         genres=gtzan.GENRES[:-1])
        with self.assertRaisesRegex(AudioDataError, "lacks the genre folders rock/"):
            self._builder()._data_root(top, "test")

    def test_folder_without_genres(self):
        with self.assertRaisesRegex(AudioDataError, f"no genre folders .* in {self.tmp_dir}"):
            self._builder()._data_root(self.tmp_dir, "test")

    def test_stray_files_are_ignored_and_a_duplicate_clip_refused(self):
        top = fake_data.write_fake_gtzan(self.tmp_dir, clips_per_genre=1)
        (top / "blues" / "._blues.00000.au").write_bytes(b"macOS shadow")
        (top / "blues" / "notes.txt").write_text("hi")
        with self.assertLogs("absl", "WARNING") as logs:
            clips = gtzan._list_clips(top)
        self.assertEqual(sorted(clips), [f"{g}.00000" for g in gtzan.GENRES])
        self.assertIn("ignored 2 file(s)", logs.output[0])
        (top / "blues" / "blues.00000.wav").write_bytes(b"")
        with self.assertRaisesRegex(AudioDataError, "are the same clip blues.00000"):
            gtzan._list_clips(top)


class BuilderErrorTest(testing.ArchiveBuilderErrorTestCase):
    """A missing source fails fast with a one-line `AudioDataError` naming the path."""

    BUILDER = gtzan.Builder
    HOST = "opihi.cs.uvic.ca"
    EMPTY_MANUAL_MESSAGE = "genres.tar.gz or genres/ or genres_original/"

    def test_offline_without_manual_copy_fails_fast_with_url_and_path(self):
        message = self.offline_message()
        self.assertIn("genres.tar.gz (its original address is dead)", message)
        self.assertIn("genres_original/", message)

    def test_unprepared_builder_has_no_skipped_files_record(self):
        with self.assertRaisesRegex(ValueError, "not prepared"):
            gtzan.skipped_files(gtzan.Builder(data_dir=self.tmp_dir))


class FakeDataTest(parameterized.TestCase):
    def test_deterministic_and_in_the_real_layouts(self):
        with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
            a = fake_data.write_fake_gtzan(first, clips_per_genre=2, as_tar=True)
            b = fake_data.write_fake_gtzan(second, clips_per_genre=2, as_tar=True)
            self.assertEqual(a.name, "genres.tar.gz")
            self.assertEqual(a.read_bytes(), b.read_bytes())
            top = fake_data.write_fake_gtzan(
                first, layout="genres_original", ids=["pop.00007"], corrupt=["jazz.00054"]
            )
            self.assertEqual(top.name, "genres_original")
            files = sorted(str(p.relative_to(top)) for p in top.rglob("*.*"))
            self.assertEqual(files, ["jazz/jazz.00054.wav", "pop/pop.00007.wav"])
            with self.assertRaises(AudioDataError):
                load_clip(top / "jazz" / "jazz.00054.wav", 22050, 100)

    def test_genres_sound_different(self):
        with tempfile.TemporaryDirectory() as tmp:
            top = fake_data.write_fake_gtzan(tmp, clips_per_genre=1, seconds=0.2)
            peaks = set()
            for genre in gtzan.GENRES:
                signal, _ = sf.read(top / genre / f"{genre}.00000.au")
                peaks.add(int(np.argmax(np.abs(np.fft.rfft(signal)))))
        self.assertLen(peaks, len(gtzan.GENRES))


if __name__ == "__main__":
    tfds.testing.test_main()
