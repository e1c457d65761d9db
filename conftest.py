"""pytest setup shared by tests/ and the builders' tests in tfds_builders/."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
import keras_audio_cnn  # noqa: E402,F401  (its CPU kernel default, before TensorFlow loads)


def pytest_collection_modifyitems(config, items):
    # tf.test.TestCase (under tfds.testing.DatasetBuilderTestCase) has a method
    # `test_session` that is a context manager, not a test; pytest would collect it
    # and report it as skipped.
    helpers = [item for item in items if item.name == "test_session"]
    if helpers:
        items[:] = [item for item in items if item.name != "test_session"]
        config.hook.pytest_deselected(items=helpers)
