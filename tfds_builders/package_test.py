"""The builders stand on their own: the catalog, and no import of keras_audio_cnn; each
offers every protocol at its own rate and at the pretrained networks' rates."""

import collections
import os
import pathlib
import subprocess
import sys
import tempfile

from absl.testing import absltest
import tensorflow_datasets as tfds

import tfds_builders
from tfds_builders import common

_REPO = pathlib.Path(__file__).parents[1]


class PackageTest(absltest.TestCase):
    def test_catalog_holds_the_dataset_folders_but_not_the_audio_folder(self):
        self.assertEqual(tfds_builders.DATASETS, ("esc50", "gtzan", "urbansound8k"))
        catalog = tfds.list_builders(with_community_datasets=False)
        for name in tfds_builders.DATASETS:
            self.assertIn(name, catalog)
        self.assertNotIn("audio_folder", catalog)

    def test_every_protocol_is_offered_at_its_rate_and_the_pretrained_rates(self):
        with tempfile.TemporaryDirectory() as data_dir:
            for name in tfds_builders.DATASETS:
                builder_class = tfds_builders.builder_class(name)
                seconds = sys.modules[builder_class.__module__].CLIP_SECONDS
                rates = collections.defaultdict(list)  # protocol -> rates of its configs
                for config in builder_class.BUILDER_CONFIGS:
                    self.assertIsInstance(config, common.RateConfig)
                    rates[config.protocol].append(config.sample_rate)
                    if config.names_rate:
                        self.assertEqual(config.name, common.rate_config_name(
                            config.sample_rate, config.protocol))
                    builder = tfds_builders.builder(f"{name}/{config.name}", data_dir=data_dir)
                    audio = builder.info.features["audio"]
                    self.assertEqual((audio.sample_rate, audio.shape),
                                     (config.sample_rate, (seconds * config.sample_rate,)))
                for protocol, offered in rates.items():
                    with self.subTest(name=name, protocol=protocol):
                        self.assertLen(set(offered), len(offered))  # one config a rate
                        self.assertContainsSubset(common.PRETRAINED_RATES, offered)
                        self.assertGreater(len(offered), len(common.PRETRAINED_RATES))
            self.assertEqual(os.listdir(data_dir), [])

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
