"""The builders stand on their own: the catalog, and no import of keras_audio_cnn."""

import os
import pathlib
import subprocess
import sys

from absl.testing import absltest
import tensorflow_datasets as tfds

import tfds_builders

_REPO = pathlib.Path(__file__).parents[1]


class PackageTest(absltest.TestCase):
    def test_catalog_holds_the_dataset_folders_but_not_the_audio_folder(self):
        self.assertEqual(tfds_builders.DATASETS, ("esc50", "gtzan", "urbansound8k"))
        catalog = tfds.list_builders(with_community_datasets=False)
        for name in tfds_builders.DATASETS:
            self.assertIn(name, catalog)
        self.assertNotIn("audio_folder", catalog)

    def test_importing_the_builders_loads_nothing_of_keras_audio_cnn(self):
        # In a fresh process: pytest's conftest.py imports keras_audio_cnn here.
        script = (
            "import sys, tfds_builders, tfds_builders.audio_folder.builder, tfds_builders.folds\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'keras_audio_cnn'))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=_REPO, capture_output=True, text=True,
            check=True, env={**os.environ, "PYTHONPATH": str(_REPO)},
        )
        self.assertEqual(result.stdout.strip().splitlines()[-1], "[]")


if __name__ == "__main__":
    absltest.main()
