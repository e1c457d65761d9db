"""The options of an audio folder: their defaults and checks."""

import math

import numpy as np

from tfds_builders.audio_io import AudioDataError

DEFAULT_SAMPLE_RATE = 22050
DEFAULT_NUM_FOLDS = 5


def check_options(sample_rate, clip_seconds, num_folds):
    """`(sample_rate, num_folds)` as ints; raises `AudioDataError` for a bad option."""

    def whole(value):
        return isinstance(value, (int, np.integer, float)) and float(value).is_integer()

    if not whole(sample_rate) or sample_rate <= 0:
        raise AudioDataError(
            f"sample_rate must be a positive whole number of Hz, got {sample_rate!r}"
        )
    if clip_seconds is not None and not (
        isinstance(clip_seconds, (int, float, np.number)) and 0 < clip_seconds < math.inf
    ):
        raise AudioDataError(
            f"clip_seconds must be a positive number of seconds or None, got {clip_seconds!r}"
        )
    if not whole(num_folds) or num_folds < 2:
        raise AudioDataError(f"num_folds must be a whole number of at least 2, got {num_folds!r}")
    return int(sample_rate), int(num_folds)
