"""Tests of the audio_folder builder on fake folders written by `fake_data.py`.

dummy_data/ (read by the DatasetBuilderTestCase) holds 3 classes x 3 files of
50-100 ms in WAV, FLAC and OGG, a hidden file and a README.txt; the other tests
write their own folders. Clips are stored at 8 kHz to keep the tests fast.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import textwrap
from unittest import mock
import wave

from absl.testing import parameterized
import numpy as np
import soundfile as sf
import tensorflow_datasets as tfds

import tfds_builders  # Registers the catalog's builders.
from tfds_builders.audio_folder import builder as afb
from tfds_builders.audio_folder import clips, fake_data, scan
from tfds_builders import folds as folds_lib
from tfds_builders.audio_io import AudioDataError

_DUMMY_DATA = pathlib.Path(__file__).parent / "dummy_data"
_RATE = 8000
_FORMATS = ("wav", "flac", "ogg") + (("mp3",) if scan.MP3_READABLE else ())


def _examples(builder, split):
    return list(tfds.as_numpy(builder.as_dataset(split=split)))


def _file_mtimes(folder):
    return {p: p.stat().st_mtime_ns for p in pathlib.Path(folder).rglob("*") if p.is_file()}


def _write_int16(path, samples, rate=_RATE):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, rate, subtype="PCM_16")


class _TestCase(parameterized.TestCase):
    def _tmp(self):
        """A new temporary folder, removed after the test."""
        path = pathlib.Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, path)
        return path


class AudioFolderDummyDataTest(tfds.testing.DatasetBuilderTestCase):
    """TFDS's standard builder checks, on a config made from dummy_data/.

    The config is made from the folder rather than declared on the class, so
    the builder the test case makes without a config gets it here.
    """

    DATASET_CLASS = afb.Builder
    SPLITS = {"fold1": 3, "fold2": 3, "fold3": 3}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.CONFIG = afb.make_config(_DUMMY_DATA, sample_rate=_RATE, num_folds=3)

    def _make_builder(self, config=None):
        return super()._make_builder(config=config or self.CONFIG)

    def test_registered(self):
        # TFDS's check is the opposite: like ImageFolder, this builder stays out of
        # the catalog (see ErrorTest.test_not_in_the_tfds_catalog).
        self.assertEqual(self.builder.name, "audio_folder")
        self.assertNotIn("audio_folder", tfds.list_builders(with_community_datasets=False))


class PrepareTest(_TestCase):
    """One fake folder in every format, prepared once for all the tests here."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        tmp = pathlib.Path(tempfile.mkdtemp())
        cls.addClassCleanup(shutil.rmtree, tmp)
        cls.audio_dir = fake_data.write_fake_audio_folder(
            tmp / "recordings", files_per_class=4, seconds=(0.2, 0.6), formats=_FORMATS
        )
        cls.data_dir = tmp / "tfds"
        cls.builder = afb.make_builder(
            cls.audio_dir, sample_rate=_RATE, num_folds=3, data_dir=cls.data_dir
        )
        cls.names_before = list(cls.builder.info.features["label"].names)
        cls.builder.download_and_prepare()

    def test_splits_labels_and_folds(self):
        config = self.builder.builder_config
        self.assertEqual(self.names_before, ["bird", "cat", "dog"])
        self.assertEqual(self.builder.info.features["label"].names, ["bird", "cat", "dog"])
        self.assertEqual(sorted(self.builder.info.splits), ["fold1", "fold2", "fold3"])
        seen = []
        for fold in (1, 2, 3):
            examples = _examples(self.builder, f"fold{fold}")
            expected = sorted(f.path for f in config.files if f.fold == fold)
            self.assertEqual(sorted(e["filename"].decode() for e in examples), expected)
            for example in examples:
                filename = example["filename"].decode()
                self.assertEqual(self.builder.info.features["label"].int2str(example["label"]),
                                 filename.split("/")[0])
                self.assertEqual((example["fold"], example["clip_index"]), (fold, 0))
            seen += expected
        self.assertLen(seen, 12)  # Every file once: clips default to the longest file.
        self.assertTrue(all("hidden" not in path for path in seen))

    def test_mixed_formats_decode_to_one_length_with_the_class_tone(self):
        names = self.builder.info.features["label"].names
        num_samples = self.builder.info.features["audio"].shape[0]
        extensions = set()
        for example in _examples(self.builder, "fold1+fold2+fold3"):
            audio = example["audio"]
            self.assertEqual((audio.dtype, audio.shape), (np.int16, (num_samples,)))
            spectrum = np.abs(np.fft.rfft(audio.astype(np.float64)))
            peak_hz = np.argmax(spectrum) * _RATE / num_samples
            expected_hz = fake_data.class_frequency(
                ("cat", "dog", "bird").index(names[example["label"]]), 3
            )
            self.assertAlmostEqual(peak_hz, expected_hz, delta=0.03 * expected_hz)
            extensions.add(example["filename"].decode().rsplit(".", 1)[1])
        self.assertEqual(extensions, set(_FORMATS))
        self.assertEqual(self.builder.info.features["audio"].sample_rate, _RATE)

    def test_data_dir_is_named_after_the_dataset_and_config(self):
        config_name = self.builder.builder_config.name
        self.assertEqual(pathlib.Path(self.builder.data_dir),
                         self.data_dir / "audio_folder" / config_name / "1.0.0")

    def test_metadata_records_folder_and_options(self):
        metadata = self.builder.info.metadata
        self.assertEqual(metadata["audio_dir"], str(self.audio_dir.resolve()))
        self.assertEqual((metadata["sample_rate"], metadata["num_folds"]), (_RATE, 3))
        self.assertEqual(metadata["folds"], folds_lib.FILE_FOLD_ASSIGNMENT)
        self.assertEqual(metadata["num_samples"], self.builder.info.features["audio"].shape[0])
        self.assertIn(str(self.audio_dir.resolve()), self.builder.builder_config.description)
        self.assertEqual(self.builder.info.supervised_keys, ("audio", "label"))

    def test_unchanged_folder_reuses_the_prepared_data(self):
        before = _file_mtimes(self.builder.data_dir)
        again = afb.make_builder(self.audio_dir, sample_rate=_RATE, num_folds=3,
                                 data_dir=self.data_dir)
        self.assertEqual(again.data_dir, self.builder.data_dir)
        with mock.patch.object(afb.Builder, "_generate_examples", side_effect=AssertionError):
            again.download_and_prepare()
        self.assertEqual(_file_mtimes(again.data_dir), before)
        self.assertEqual(again.info.splits.total_num_examples, 12)

    def test_a_fresh_process_reloads_names_and_splits(self):
        script = textwrap.dedent(f"""
            import json
            from tfds_builders.audio_folder import builder as afb
            builder = afb.make_builder({str(self.audio_dir)!r}, sample_rate={_RATE},
                                       num_folds=3, data_dir={str(self.data_dir)!r})
            builder.download_and_prepare()
            print(json.dumps({{
                "data_dir": builder.data_dir,
                "names": builder.info.features["label"].names,
                "splits": {{k: v.num_examples for k, v in builder.info.splits.items()}},
            }}))
        """)
        before = _file_mtimes(self.builder.data_dir)
        repo = pathlib.Path(__file__).parents[2]
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=repo, capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONPATH": str(repo)},
        )
        reloaded = json.loads(result.stdout.strip().splitlines()[-1])
        self.assertEqual(reloaded["data_dir"], self.builder.data_dir)
        self.assertEqual(reloaded["names"], ["bird", "cat", "dog"])
        self.assertEqual(reloaded["splits"],
                         {k: v.num_examples for k, v in self.builder.info.splits.items()})
        self.assertEqual(_file_mtimes(self.builder.data_dir), before)

    def test_prepared_data_reads_without_the_builder_class(self):
        read_only = tfds.builder_from_directory(self.builder.data_dir)
        self.assertEqual(read_only.info.features["label"].names, ["bird", "cat", "dog"])
        self.assertEqual(read_only.info.splits.total_num_examples, 12)


class ClipTest(_TestCase):
    @parameterized.parameters(
        (100, 100, [0]),
        (30, 100, [0]),  # Shorter than a clip: one padded clip.
        (149, 100, [0]),  # A tail under half a clip is dropped...
        (150, 100, [0, 100]),  # ...one of half a clip or more is kept, padded.
        (200, 100, [0, 100]),
        (260, 100, [0, 100, 200]),
    )
    def test_clip_starts(self, length, num_samples, expected):
        self.assertEqual(clips.clip_starts(length, num_samples), expected)

    def test_long_files_are_cut_into_clips_of_one_fold(self):
        root = self._tmp()
        rng = np.random.default_rng(0)
        seconds = {"a/long.wav": 2.6, "a/short.wav": 0.4, "b/long.wav": 2.2, "b/short.wav": 0.3}
        samples = {}
        for name, length in seconds.items():
            samples[name] = rng.integers(-20000, 20000, int(length * _RATE), dtype=np.int16)
            _write_int16(root / "audio" / name, samples[name])
        builder = afb.make_builder(root / "audio", sample_rate=_RATE, clip_seconds=1.0,
                                   num_folds=2, data_dir=root / "tfds")
        builder.download_and_prepare()
        folds = {f.path: f.fold for f in builder.builder_config.files}

        clips = {}
        for fold in (1, 2):
            for example in _examples(builder, f"fold{fold}"):
                name = example["filename"].decode()
                self.assertEqual(example["fold"], folds[name])
                self.assertEqual(folds[name], fold)
                clips[name, int(example["clip_index"])] = example["audio"]
        self.assertCountEqual(clips, [("a/long.wav", 0), ("a/long.wav", 1), ("a/long.wav", 2),
                                      ("b/long.wav", 0), ("b/long.wav", 1),
                                      ("a/short.wav", 0), ("b/short.wav", 0)])
        for (name, index), clip in clips.items():
            piece = samples[name][index * _RATE : (index + 1) * _RATE]
            np.testing.assert_array_equal(clip[: len(piece)], piece)  # 16-bit at 8 kHz: exact.
            self.assertFalse(np.any(clip[len(piece) :]))  # Zero padding.


class FoldTest(_TestCase):
    def _folder(self, files_per_class=2, classes=("a", "b")):
        root = self._tmp() / "audio"
        return fake_data.write_fake_audio_folder(
            root, classes=classes, files_per_class=files_per_class, seconds=0.05, formats=("wav",)
        )

    def test_each_file_fold_is_a_hash_of_its_path_alone(self):
        root = self._folder(files_per_class=4, classes=("a", "b", "c"))
        first = afb.make_config(root, sample_rate=_RATE, num_folds=2)
        second = afb.make_config(root, sample_rate=_RATE, num_folds=2)
        self.assertEqual(first.name, second.name)
        self.assertEqual(first.files, second.files)
        self.assertEqual({f.path: f.fold for f in first.files},
                         folds_lib.file_folds([f.path for f in first.files], 2))

    def test_growing_or_shrinking_the_folder_moves_no_file_to_another_fold(self):
        # With folds dealt round-robin over classes, one added file re-dealt the
        # others: a grown folder's test folds held files earlier models trained on.
        root = self._folder(files_per_class=6, classes=("a", "b", "c"))
        before = {f.path: f.fold for f in afb.make_config(root, sample_rate=_RATE,
                                                          num_folds=3).files}
        for name in ("a/new_1.wav", "a/new_2.wav", "c/deeper/new.wav", "b/0.wav"):
            _write_int16(root / name, np.full(400, 1000, np.int16))
        (root / "d").mkdir()  # A new class too.
        _write_int16(root / "d" / "d.wav", np.full(400, 1000, np.int16))
        grown = {f.path: f.fold for f in afb.make_config(root, sample_rate=_RATE,
                                                         num_folds=3).files}
        self.assertLen(grown, len(before) + 5)
        self.assertEqual({path: grown[path] for path in before}, before)
        for path in ("a/a_00.wav", "b/b_03.wav", "c/c_05.wav"):
            (root / path).unlink()
        shrunk = {f.path: f.fold for f in afb.make_config(root, sample_rate=_RATE,
                                                          num_folds=3).files}
        self.assertEqual(shrunk, {p: f for p, f in grown.items() if p in shrunk})
        self.assertLen(shrunk, len(grown) - 3)

    def test_a_fold_without_files_is_an_error_and_a_class_missing_from_one_a_warning(self):
        root = self._tmp() / "audio"
        # Names chosen by their hashes: in 3 folds, fold 3 gets none of the three
        # files; in 2 folds, class a's one file is in fold 1, class b's in both.
        def fold(path, num_folds):
            return folds_lib.file_folds([path], num_folds)[path]

        candidates = [f"{c}/{c}{i}.wav" for i in range(100) for c in "ab"]
        usable = [p for p in candidates if fold(p, 3) != 3]
        a = next(p for p in usable if p[0] == "a" and fold(p, 2) == 1)
        b = [next(p for p in usable if p[0] == "b" and fold(p, 2) == k) for k in (1, 2)]
        chosen = [a, *b]
        self.assertEqual({fold(p, 3) for p in chosen}, {1, 2})
        for path in chosen:
            _write_int16(root / path, np.full(400, 1000, np.int16))
        with self.assertRaisesRegex(
                AudioDataError,
                rf"^audio_dir {root}: fold 3 of 1..3 gets none of its 3 audio files \(each "
                r"file's fold is a hash of its path, balanced only on average\); add recordings, "
                rf"use fewer folds \(num_folds\), or give every file's fold in {root}/folds.csv$"):
            afb.make_config(root, sample_rate=_RATE, num_folds=3)
        with self.assertLogs("absl", level="WARNING") as logs:
            config = afb.make_config(root, sample_rate=_RATE, num_folds=2)
        self.assertEqual(sorted({f.fold for f in config.files}), [1, 2])
        missing = [line for line in logs.output if "has no file in fold(s)" in line]
        self.assertEqual([line.split(":", 2)[2] for line in missing],
                         ["audio_folder: class 'a' has no file in fold(s) 2 of 1..2 (1 files); "
                          "models tested on those folds see none of it."])

    def test_folds_csv_is_used_as_given(self):
        root = self._folder(files_per_class=3)
        dealt = afb.make_config(root, sample_rate=_RATE, num_folds=2).name
        given = {"a/a_00.wav": 1, "a/a_01.wav": 1, "a/a_02.wav": 1,
                 "b/b_00.wav": 2, "b/b_01.wav": 2, "b/b_02.wav": 1}
        rows = "".join(f"{name},{fold}\n" for name, fold in given.items())
        (root / "folds.csv").write_text("filename,fold,session\n" + rows.replace("\n", ",x\n"))
        builder = afb.make_builder(root, sample_rate=_RATE, num_folds=2,
                                   data_dir=root.parent / "tfds")
        self.assertNotEqual(builder.builder_config.name, dealt)
        self.assertEqual(builder.info.metadata["folds"], "folds.csv")
        builder.download_and_prepare()
        for fold in (1, 2):
            examples = _examples(builder, f"fold{fold}")
            self.assertCountEqual([e["filename"].decode() for e in examples],
                                  [name for name, f in given.items() if f == fold])

    @parameterized.named_parameters(
        ("unlisted_file", "a/a_00.wav,1\na/a_01.wav,2\nb/b_00.wav,1\n",
         r"folds.csv does not list 1 audio file\(s\), first b/b_01.wav"),
        ("unknown_file", "a/a_00.wav,1\na/a_01.wav,2\nb/b_00.wav,1\nb/b_01.wav,2\na/zz.wav,1\n",
         r"folds.csv line 6: 'a/zz.wav' is not an audio file"),
        ("hidden_file", "a/.a_hidden.wav,1\n", r"line 2: 'a/.a_hidden.wav' is not an audio file"),
        ("fold_not_a_number", "a/a_00.wav,1\na/a_01.wav,two\n",
         r"line 3: fold 'two' is not a whole number"),
        ("fold_too_high", "a/a_00.wav,3\n",
         r"line 2: fold 3 is outside 1..2; renumber it or pass num_folds=3"),
        ("fold_zero", "a/a_00.wav,0\n", r"line 2: fold 0 is outside 1..2; renumber it$"),
        ("listed_twice", "a/a_00.wav,1\na/a_01.wav,2\na/a_00.wav,2\n",
         r"line 4: a/a_00.wav is listed again \(first on line 2\)"),
        ("empty_fold", "a/a_00.wav,1\na/a_01.wav,1\nb/b_00.wav,1\nb/b_01.wav,1\n",
         r"folds.csv puts no file in fold 2 of 1..2"),
    )
    def test_folds_csv_is_validated(self, rows, pattern):
        root = self._folder()
        (root / "folds.csv").write_text("filename,fold\n" + rows)
        with self.assertRaisesRegex(AudioDataError, pattern) as caught:
            afb.make_config(root, sample_rate=_RATE, num_folds=2)
        self.assertIn(str(root / "folds.csv"), str(caught.exception))
        self.assertNotIn("\n", str(caught.exception))

    def test_folds_csv_without_its_columns(self):
        root = self._folder()
        (root / "folds.csv").write_text("file,fold\na/a_00.wav,1\n")
        with self.assertRaisesRegex(AudioDataError, r"lacks the column\(s\) filename"):
            afb.make_config(root, sample_rate=_RATE, num_folds=2)


# A folder whose config names are pinned: 12 mono 16-bit WAV files, (relative
# path, sample rate, frames), one over the 10 s cap, with fixed sizes and
# modification times; plus a hidden and a non-audio file, which are ignored.
_PINNED_FILES = (
    ("bird/b0.wav", 2000, 900),
    ("bird/b1.wav", 4000, 3000),
    ("bird/field/b2.wav", 2000, 1500),
    ("bird/field/b3.wav", 8000, 700),
    ("cat/c0.wav", 2000, 21000),
    ("cat/c1.wav", 2000, 400),
    ("cat/c2.wav", 3000, 1200),
    ("dog/d0.wav", 2000, 800),
    ("dog/d1.wav", 2000, 1000),
    ("dog/d2.wav", 2000, 1100),
    ("dog/d3.wav", 2000, 1300),
    ("dog/d4.wav", 2000, 600),
)
_PINNED_MTIME_NS = 1_700_000_000_123_456_789
_PINNED_FOLDS_CSV = "filename,fold\n" + "".join(
    f"{path},{1 + index % 2}\n" for index, (path, _, _) in enumerate(_PINNED_FILES)
)


def _write_pinned_folder(root):
    for index, (relative, rate, frames) in enumerate(_PINNED_FILES):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(np.full(frames, 100 * index, "<i2").tobytes())
        os.utime(path, ns=(_PINNED_MTIME_NS, _PINNED_MTIME_NS + index * 1_000_003))
    (root / "bird" / ".hidden.wav").write_bytes(b"ignored")
    (root / "cat" / "notes.txt").write_text("ignored")


class PinnedConfigTest(_TestCase):
    """The same folder with the same options keeps its config name, hence its data.

    Names, clip lengths and folds computed by the builder of commit 8506787, the
    last before it was split into modules: prepared data and trained runs name
    these configs. The name hashes the folder's absolute path, so the folder is
    given relative to the working directory and `Path.resolve` keeps it so: the
    hashed path is "recordings" wherever the test runs.

    Without folds.csv, the folds and names are those of the per-file assignment
    (`tfds_builders.folds.file_folds`, "file-sha256-v1"), computed when it
    replaced the round-robin one: the folds changed (each is now a hash of the
    file's path), and the name hashes the folds and the assignment's name. With
    folds.csv the folds are the user's, the name leaves the assignment out, and
    it is still the one of commit 8506787.
    """

    def setUp(self):
        super().setUp()
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(self._tmp())
        _write_pinned_folder(pathlib.Path("recordings"))
        resolve = mock.patch.object(pathlib.Path, "resolve", lambda path, strict=False: path)
        resolve.start()
        self.addCleanup(resolve.stop)

    @parameterized.named_parameters(
        ("per_file", {"sample_rate": 2000, "num_folds": 3}, False, "recordings-79627975b54c",
         20000, "bird/b0.wav 2, bird/b1.wav 2, bird/field/b2.wav 2, bird/field/b3.wav 3, "
         "cat/c0.wav 3, cat/c1.wav 3, cat/c2.wav 2, dog/d0.wav 3, dog/d1.wav 2, dog/d2.wav 3, "
         "dog/d3.wav 1, dog/d4.wav 1"),
        ("options", {"sample_rate": 4000, "clip_seconds": 0.25, "num_folds": 4}, False,
         "recordings-cf558860e9ae",
         1000, "bird/b0.wav 3, bird/b1.wav 2, bird/field/b2.wav 2, bird/field/b3.wav 3, "
         "cat/c0.wav 1, cat/c1.wav 3, cat/c2.wav 1, dog/d0.wav 2, dog/d1.wav 4, dog/d2.wav 1, "
         "dog/d3.wav 1, dog/d4.wav 1"),
        ("folds_csv", {"sample_rate": 2000, "num_folds": 2}, True, "recordings-66ab7696cdac",
         20000, "bird/b0.wav 1, bird/b1.wav 2, bird/field/b2.wav 1, bird/field/b3.wav 2, "
         "cat/c0.wav 1, cat/c1.wav 2, cat/c2.wav 1, dog/d0.wav 2, dog/d1.wav 1, dog/d2.wav 2, "
         "dog/d3.wav 1, dog/d4.wav 2"),
    )
    def test_config_name_clip_length_and_folds_are_unchanged(
        self, options, with_folds_csv, name, num_samples, folds
    ):
        if with_folds_csv:
            pathlib.Path("recordings", "folds.csv").write_text(_PINNED_FOLDS_CSV)
        config = afb.make_config("recordings", **options)
        self.assertEqual(", ".join(f"{f.path} {f.fold}" for f in config.files), folds)
        self.assertEqual(config.num_samples, num_samples)
        self.assertEqual(config.name, name)


class CacheTest(_TestCase):
    def setUp(self):
        super().setUp()
        tmp = self._tmp()
        self.root = fake_data.write_fake_audio_folder(
            tmp / "audio", classes=("a", "b"), files_per_class=3, seconds=0.05, formats=("wav",)
        )
        self.data_dir = tmp / "tfds"

    def _name(self, **options):
        return afb.make_config(self.root, **{"sample_rate": _RATE, "num_folds": 2, **options}).name

    def test_an_added_file_is_prepared_anew(self):
        first = afb.make_builder(self.root, sample_rate=_RATE, num_folds=2, data_dir=self.data_dir)
        first.download_and_prepare()
        _write_int16(self.root / "b" / "new.wav", np.zeros(100, np.int16))
        second = afb.make_builder(self.root, sample_rate=_RATE, num_folds=2, data_dir=self.data_dir)
        self.assertNotEqual(second.data_dir, first.data_dir)
        self.assertEqual(second.info.splits.total_num_examples, 0)  # Not prepared yet.
        second.download_and_prepare()
        self.assertEqual(second.info.splits.total_num_examples, 7)
        self.assertTrue(pathlib.Path(first.data_dir).is_dir())  # The earlier one stays.

    def test_name_follows_audio_files_and_options_only(self):
        name = self._name()
        self.assertRegex(name, r"^audio-[0-9a-f]{12}$")
        self.assertEqual(self._name(), name)
        # Ignored files do not count.
        (self.root / "README.txt").write_text("edited")
        (self.root / "a" / ".notes").write_text("hidden")
        (self.root / "a" / "cover.jpg").write_bytes(b"\xff\xd8")
        self.assertEqual(self._name(), name)
        # Options do.
        self.assertNotEqual(self._name(sample_rate=16000), name)
        self.assertNotEqual(self._name(num_folds=3), name)
        self.assertNotEqual(self._name(clip_seconds=0.5), name)
        # A rewritten, a removed and a renamed file do.
        changed = self.root / "a" / "a_00.wav"
        _write_int16(changed, np.ones(400, np.int16))
        os.utime(changed, ns=(1, 1_000_000_000))  # Even with an old modification time.
        rewritten = self._name()
        self.assertNotEqual(rewritten, name)
        (self.root / "a" / "a_01.wav").rename(self.root / "a" / "a_09.wav")
        self.assertNotEqual(self._name(), rewritten)
        (self.root / "a" / "a_09.wav").unlink()
        self.assertNotIn(self._name(), (name, rewritten))

    def test_a_file_changed_after_make_builder_is_an_error(self):
        builder = afb.make_builder(self.root, sample_rate=_RATE, num_folds=2,
                                   data_dir=self.data_dir)
        changed = self.root / "b" / "b_02.wav"
        _write_int16(changed, np.ones(50, np.int16))
        with self.assertRaisesRegex(AudioDataError, f"audio file {changed} changed after"):
            builder.download_and_prepare()


class IgnoredFilesTest(_TestCase):
    def test_hidden_and_non_audio_files_are_ignored_and_counted(self):
        root = fake_data.write_fake_audio_folder(  # With a/.a_hidden.wav and README.txt.
            self._tmp() / "audio",
            classes=("a", "b"), files_per_class=2, seconds=0.05, formats=("wav",),
        )
        tone = np.full(80, 1000, np.int16)
        for extra in (".hidden_dir/x.wav", "__MACOSX/a/._a_00.wav", "a/.git/y.wav",
                      "loose.wav", "b/deeper/z.WAV"):
            _write_int16(root / extra, tone)
        (root / "a" / "notes.txt").write_text("notes")
        (root / ".DS_Store").write_bytes(b"\0")
        with self.assertLogs("absl", level="INFO") as logs:
            config = afb.make_config(root, sample_rate=_RATE, num_folds=2)
        self.assertEqual(config.classes, ("a", "b"))
        self.assertEqual([f.path for f in config.files],
                         ["a/a_00.wav", "a/a_01.wav", "b/b_00.wav", "b/b_01.wav", "b/deeper/z.WAV"])
        output = "\n".join(logs.output)
        # Hidden: .DS_Store, .hidden_dir, __MACOSX, a/.a_hidden.wav, a/.git.
        # Non-audio: README.txt, loose.wav, a/notes.txt.
        self.assertIn("5 audio files in 2 classes; ignored 5 hidden and 3 non-audio", output)
        self.assertIn("ignored 1 audio file(s) directly in", output)


class ErrorTest(_TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = self._tmp()

    def _assert_error(self, pattern, audio_dir, **options):
        with self.assertRaisesRegex(AudioDataError, pattern) as caught:
            afb.make_builder(audio_dir, data_dir=self.tmp / "tfds", **options)
        self.assertNotIn("\n", str(caught.exception))
        return str(caught.exception)

    def _classes(self, **files):
        for name, samples in files.items():
            _write_int16(self.tmp / "audio" / f"{name.replace('__', '/')}.wav", samples)
        return self.tmp / "audio"

    def test_missing_folder(self):
        missing = self.tmp / "nowhere"
        self._assert_error(f"audio_dir {missing} does not exist; give a folder", missing)

    def test_file_instead_of_folder(self):
        path = self._classes(a__x=np.ones(10, np.int16), b__y=np.ones(10, np.int16)) / "a" / "x.wav"
        self._assert_error(f"audio_dir {path} is not a folder", path)

    def test_fewer_than_two_classes(self):
        root = self._classes(a__x=np.ones(10, np.int16))
        (root / ".hidden").mkdir()
        self._assert_error(rf"audio_dir {root} has 1 class folder\(s\) \(a\), at least 2", root)

    def test_class_without_audio(self):
        root = self._classes(a__x=np.ones(10, np.int16), b__y=np.ones(10, np.int16))
        (root / "b" / "y.wav").rename(root / "b" / ".y.wav")
        (root / "b" / "notes.txt").write_text("no audio here")
        self._assert_error(f"class folder {root / 'b'} holds no audio files", root)

    def test_undecodable_file(self):
        root = self._classes(a__x=np.ones(10, np.int16), b__y=np.ones(10, np.int16))
        (root / "b" / "bad.flac").write_bytes(b"fLaC but not really")
        self._assert_error(f"cannot decode audio file {root / 'b' / 'bad.flac'}: ", root)

    def test_empty_file(self):
        root = self._classes(a__x=np.ones(10, np.int16), b__y=np.zeros(0, np.int16))
        self._assert_error(f"audio file {root / 'b' / 'y.wav'} holds no samples", root)

    def test_fewer_files_than_folds(self):
        root = self._classes(a__x=np.ones(10, np.int16), b__y=np.ones(10, np.int16))
        self._assert_error(r"holds 2 audio files, fewer than num_folds=5", root)

    def test_dangling_file_link_names_the_link_and_its_missing_target(self):
        root = self._classes(a__x=np.ones(10, np.int16), b__y=np.ones(10, np.int16))
        (root / "a" / "gone.wav").symlink_to(self.tmp / "moved" / "gone.wav")
        self._assert_error(
            f"^{root / 'a' / 'gone.wav'} is a symbolic link to {self.tmp / 'moved' / 'gone.wav'}, "
            "which does not exist; restore its target or remove the link$", root)

    def test_dangling_class_folder_link_is_not_ignored(self):
        root = self._classes(a__x=np.ones(10, np.int16), b__y=np.ones(10, np.int16))
        (root / "c").symlink_to("../elsewhere")  # Relative: named from the link's folder.
        self._assert_error(
            f"^{root / 'c'} is a symbolic link to {root / '../elsewhere'}, which does not exist",
            root)

    def test_symbolic_link_loop_as_a_class_folder(self):
        root = self._classes(a__x=np.ones(10, np.int16), b__y=np.ones(10, np.int16))
        (root / "c").symlink_to("c")
        self._assert_error(f"^{root / 'c'} is a symbolic link loop \\(to c, which leads back", root)

    def test_folder_link_back_to_its_own_folder_is_a_loop(self):
        root = self._classes(a__x=np.ones(10, np.int16), b__y=np.ones(10, np.int16))
        (root / "a" / "again").symlink_to("..")
        self._assert_error(f"^folder {root / 'a' / 'again' / 'a'} is a symbolic link back to a "
                           f"folder it is in \\({root / 'a'}\\), a loop", root)

    def test_dangling_folds_csv_link_is_not_ignored(self):
        root = self._classes(a__x=np.ones(10, np.int16), b__y=np.ones(10, np.int16))
        (root / "folds.csv").symlink_to(self.tmp / "folds.csv")
        self._assert_error(f"^{root / 'folds.csv'} is a symbolic link to {self.tmp / 'folds.csv'}, "
                           "which does not exist", root, num_folds=2)

    def test_links_to_existing_files_and_folders_are_followed(self):
        root = self._classes(a__x=np.ones(10, np.int16), b__y=np.ones(10, np.int16),
                             elsewhere__z=np.ones(10, np.int16))
        (root / "elsewhere").rename(self.tmp / "elsewhere")
        (root / "c").symlink_to(self.tmp / "elsewhere")
        (root / "a" / "w.wav").symlink_to(root / "b" / "y.wav")
        config = afb.make_config(root, sample_rate=_RATE, num_folds=2)
        self.assertEqual([f.path for f in config.files], ["a/w.wav", "a/x.wav", "b/y.wav", "c/z.wav"])

    def test_named_pipe_with_an_audio_name_is_refused_not_opened(self):
        root = self._classes(a__x=np.ones(10, np.int16), b__y=np.ones(10, np.int16))
        os.mkfifo(root / "b" / "stream.wav")
        self._assert_error(f"^{root / 'b' / 'stream.wav'} is not a regular file", root)

    def test_unreadable_folder_and_file(self):
        # Permissions are not checked for root, who runs these tests in containers:
        # the file system's answer is simulated.
        root = self._classes(a__x=np.ones(10, np.int16), b__y=np.ones(10, np.int16))
        denied = {root / "b"}
        iterdir, open_ = pathlib.Path.iterdir, pathlib.Path.open

        def refuse(method):
            def call(path, *args, **kwargs):
                if path in denied:
                    raise PermissionError(13, "Permission denied", str(path))
                return method(path, *args, **kwargs)
            return call

        with mock.patch.object(pathlib.Path, "iterdir", refuse(iterdir)):
            self._assert_error(
                f"^cannot list folder {root / 'b'}: permission denied; make it readable "
                f"\\(chmod u\\+rx\\) or move it out of {root}$", root)
        denied = {root / "a" / "x.wav"}
        with mock.patch.object(pathlib.Path, "open", refuse(open_)):
            self._assert_error(
                f"^cannot read audio file {root / 'a' / 'x.wav'}: permission denied; make it "
                "readable \\(chmod u\\+r\\) or move it out of the folder$", root)
        (root / "folds.csv").write_text("filename,fold\na/x.wav,1\nb/y.wav,2\n")
        denied = {root / "folds.csv"}
        with mock.patch.object(pathlib.Path, "open", refuse(open_)):
            self._assert_error(
                f"^cannot read {root / 'folds.csv'}: permission denied; make it readable "
                "\\(chmod u\\+r\\), or remove it", root, num_folds=2)

    @parameterized.parameters(
        ({"sample_rate": 0}, "sample_rate must be"),
        ({"sample_rate": 22050.5}, "sample_rate must be"),
        ({"clip_seconds": 0}, "clip_seconds must be"),
        ({"clip_seconds": float("nan")}, "clip_seconds must be"),
        ({"num_folds": 1}, "num_folds must be"),
        ({"num_folds": 2.5}, "num_folds must be"),
    )
    def test_bad_options(self, options, pattern):
        root = self._classes(a__x=np.ones(10, np.int16), b__y=np.ones(10, np.int16))
        self._assert_error(pattern, root, **options)

    def test_builder_by_name_points_to_make_builder(self):
        with self.assertRaisesRegex(AudioDataError, r"make_builder\(audio_dir\)"):
            afb.Builder(data_dir=self.tmp)

    def test_not_in_the_tfds_catalog(self):
        self.assertNotIn("audio_folder", tfds_builders.DATASETS)
        with self.assertRaisesRegex(tfds.core.registered.DatasetNotFoundError, "audio_folder"):
            tfds.builder("audio_folder", data_dir=self.tmp)


class FakeDataTest(_TestCase):
    def test_balanced_folds_csv(self):
        root = fake_data.write_fake_audio_folder(self._tmp(), classes=("a", "b", "c", "d"),
                                                 files_per_class=8, seconds=0.05)
        written = fake_data.write_folds_csv(root, 2)
        config = afb.make_config(root, sample_rate=_RATE, num_folds=2)
        self.assertEqual(config.fold_source, "folds.csv")
        self.assertEqual({f.path: f.fold for f in config.files}, written)
        for label in range(4):
            self.assertEqual(sorted(f.fold for f in config.files if f.label == label),
                             [1] * 4 + [2] * 4)

    def test_deterministic_with_varied_encodings(self):
        first = fake_data.write_fake_audio_folder(self._tmp(),
                                                  formats=_FORMATS, seconds=0.1)
        second = fake_data.write_fake_audio_folder(self._tmp(),
                                                   formats=_FORMATS, seconds=0.1)
        files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
        self.assertEqual(files, sorted(p.relative_to(second) for p in second.rglob("*")
                                       if p.is_file()))
        self.assertIn(pathlib.Path("README.txt"), files)
        self.assertIn(pathlib.Path("cat/.cat_hidden.wav"), files)
        for path in files:  # Ogg streams get random serial numbers: compare samples.
            if path.suffix == ".txt":
                continue
            np.testing.assert_array_equal(sf.read(first / path)[0], sf.read(second / path)[0])
        infos = [sf.info(first / p) for p in files if p.suffix != ".txt"]
        self.assertEqual({i.samplerate for i in infos}, set(fake_data.RATES))
        self.assertEqual({i.channels for i in infos}, {1, 2})
        self.assertLessEqual({"PCM_16", "PCM_24", "FLOAT", "PCM_U8", "PCM_S8", "VORBIS"},
                             {i.subtype for i in infos})


if __name__ == "__main__":
    tfds.testing.test_main()
