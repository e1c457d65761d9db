"""Every builder keeps a suspect file, warns naming it and records it in its metadata.

Suspect (`audio_io.load_clip_checked`): a WAV or AU file cut short, a file under
25 ms, a file of zeros. The builders' versions and examples stay as they were:
the record is metadata alone.
"""

import pathlib
import shutil
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import soundfile as sf
import tensorflow_datasets as tfds

from tfds_builders import common
from tfds_builders.audio_folder import builder as afb
from tfds_builders.audio_folder import fake_data as folder_fake
from tfds_builders.esc50 import esc50_dataset_builder, fake_data as esc50_fake
from tfds_builders.gtzan import fake_data as gtzan_fake, gtzan_dataset_builder
from tfds_builders.urbansound8k import fake_data as us8k_fake, urbansound8k_dataset_builder


def _cut_short(path):
    """Drops the second half of the file's bytes, keeping its header as it was."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return sf.info(path).frames


def _silence(path):
    """Rewrites the file as zeros in its own format."""
    info = sf.info(path)
    sf.write(path, np.zeros((info.frames, info.channels)), info.samplerate,
             subtype=info.subtype, format=info.format)


def _esc50(root):
    top = esc50_fake.write_fake_esc50(root / "manual", classes=(0, 1), seconds=0.1)
    return esc50_dataset_builder.Builder, root / "manual", sorted((top / "audio").glob("*.wav"))


def _urbansound8k(root):
    top = us8k_fake.write_fake_urbansound8k(root / "manual", classes=(0, 1), seconds=0.1)
    return urbansound8k_dataset_builder.Builder, root / "manual", sorted(top.rglob("*.wav"))


def _gtzan(root):
    top = gtzan_fake.write_fake_gtzan(root / "manual", clips_per_genre=2, seconds=0.1)
    return gtzan_dataset_builder.Builder, root / "manual", sorted(top.rglob("*.au"))


class SuspectFilesTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.root = pathlib.Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.root)

    @parameterized.named_parameters(
        ("esc50", _esc50), ("urbansound8k", _urbansound8k), ("gtzan", _gtzan))
    def test_catalog_builder_keeps_and_records_suspect_files(self, write):
        builder_class, manual_dir, files = write(self.root)
        truncated, silent = files[0], files[-1]
        frames = sf.info(truncated).frames
        held = _cut_short(truncated)
        _silence(silent)
        builder = builder_class(data_dir=self.root / "data")
        config = tfds.download.DownloadConfig(manual_dir=str(manual_dir))
        with self.assertLogs("absl", level="WARNING") as logs:
            builder.download_and_prepare(download_config=config)
        expected = {
            truncated.name: f"truncated: its header declares {frames} frames, it holds {held}",
            silent.name: "every sample is zero",
        }
        self.assertEqual(builder.info.metadata[common.SUSPECT_FILES], expected)
        warnings = [line for line in logs.output if "looks damaged" in line]
        self.assertLen(warnings, 2)
        for name, line in zip(sorted(expected), sorted(warnings)):
            self.assertIn(f"kept {name}, which looks damaged", line)
        # Kept: every file is an example, and the version is the builder's own.
        self.assertEqual(builder.info.splits.total_num_examples, len(files))
        self.assertEqual(str(builder.version), str(builder_class.VERSION))
        reread = tfds.builder_from_directory(builder.data_dir)
        self.assertEqual(reread.info.metadata[common.SUSPECT_FILES], expected)

    def test_audio_folder_keeps_and_records_suspect_files(self):
        audio_dir = folder_fake.write_fake_audio_folder(
            self.root / "audio", classes=("a", "b"), files_per_class=3, seconds=0.1,
            formats=("wav",))
        frames = sf.info(audio_dir / "a" / "a_01.wav").frames
        held = _cut_short(audio_dir / "a" / "a_01.wav")
        sf.write(audio_dir / "b" / "tick.wav", np.full(1, 0.5), 8000)
        sf.write(audio_dir / "b" / "silent.wav", np.zeros(800), 8000)
        builder = afb.make_builder(audio_dir, sample_rate=8000, num_folds=2,
                                   data_dir=self.root / "data")
        with self.assertLogs("absl", level="WARNING") as logs:
            builder.download_and_prepare()
        suspects = builder.info.metadata[common.SUSPECT_FILES]
        self.assertEqual(sorted(suspects), ["a/a_01.wav", "b/silent.wav", "b/tick.wav"])
        self.assertEqual(suspects["a/a_01.wav"],
                         f"truncated: its header declares {frames} frames, it holds {held}")
        self.assertEqual(suspects["b/silent.wav"], "every sample is zero")
        self.assertEqual(suspects["b/tick.wav"], "only 1 sample(s) (0.125 ms, under 25 ms)")
        self.assertLen([line for line in logs.output if "looks damaged" in line], 3)
        self.assertEqual(builder.info.splits.total_num_examples, 8)
        reread = tfds.builder_from_directory(builder.data_dir)
        self.assertEqual(reread.info.metadata[common.SUSPECT_FILES], suspects)
        self.assertEqual(reread.info.metadata["num_files"], 8)


if __name__ == "__main__":
    absltest.main()
