"""Unit tests of `preparation.prepare` (processes sharing a data_dir: tests/test_prepare.py)."""

import pathlib
import shutil
import tempfile

from absl.testing import absltest

from tfds_builders import preparation
from tfds_builders.audio_folder import builder as afb
from tfds_builders.audio_folder import fake_data


class PrepareTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = pathlib.Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)
        fake_data.write_fake_audio_folder(self.tmp / "audio", classes=("a", "b"),
                                          files_per_class=2, seconds=0.05, formats=("wav",))

    def _builder(self):
        return afb.make_builder(self.tmp / "audio", sample_rate=8000, num_folds=2,
                                data_dir=self.tmp / "tfds")

    def test_a_builder_made_before_another_prepared_the_data_reads_it(self):
        early = self._builder()
        self.assertEqual(early.info.splits.total_num_examples, 0)
        other = self._builder()  # As another process would.
        other.download_and_prepare()
        preparation.prepare(early)
        self.assertEqual(early.info.splits.total_num_examples, 4)
        self.assertEqual(sorted(early.info.splits), ["fold1", "fold2"])

    def test_lock_file_is_beside_the_version_folder_and_gone_after(self):
        builder = self._builder()
        preparation.prepare(builder)
        version_dir = pathlib.Path(builder.data_dir)
        self.assertEqual(preparation.lock_path(version_dir), version_dir.with_name("1.0.0.lock"))
        self.assertEqual([p.name for p in version_dir.parent.iterdir()], ["1.0.0"])


if __name__ == "__main__":
    absltest.main()
