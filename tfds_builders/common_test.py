"""Tests of what the builders share: the int16 audio feature."""

import pathlib
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core.features import feature as feature_lib

from tfds_builders import common
from tfds_builders.audio_folder import builder as afb
from tfds_builders.audio_folder import fake_data


class BytesAudioTest(absltest.TestCase):
    def test_preparing_and_reading_never_read_the_deprecated_dtype(self):
        # TFDS logs "`FeatureConnector.dtype` is deprecated" through this function,
        # at most 10 times a process: patched, every read of `.dtype` is seen.
        tmp = pathlib.Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, tmp)
        fake_data.write_fake_audio_folder(tmp / "audio", classes=("a", "b"), files_per_class=2,
                                          seconds=0.05, formats=("wav",))
        with mock.patch.object(feature_lib, "log_tf_warning") as warn:
            builder = afb.make_builder(tmp / "audio", sample_rate=8000, num_folds=2,
                                       data_dir=tmp / "tfds")
            builder.download_and_prepare()
            examples = list(tfds.as_numpy(builder.as_dataset(split="fold1+fold2")))
            reread = tfds.builder_from_directory(builder.data_dir)
            batches = list(tfds.as_numpy(reread.as_dataset(split="fold1", batch_size=2)))
        warn.assert_not_called()
        self.assertLen(examples, 4)
        self.assertEqual(examples[0]["audio"].dtype, np.int16)
        self.assertEqual(batches[0]["audio"].shape, (2, 400))
        feature = reread.info.features["audio"]
        self.assertIsInstance(feature, common.BytesAudio)
        self.assertEqual((feature.np_dtype, feature.shape, feature.sample_rate),
                         (np.int16, (400,), 8000))

    def test_saved_features_are_those_of_tfds_audio(self):
        feature = common.int16_audio(400, 8000, "doc")
        with mock.patch.object(feature_lib, "log_tf_warning"):
            expected = tfds.features.Audio.to_json_content(feature)
        self.assertEqual(feature.to_json_content(), expected)


if __name__ == "__main__":
    absltest.main()
