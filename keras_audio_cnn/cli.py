"""What the command-line entry points share: errors a user can fix are one line."""

import sys

from keras_audio_cnn.audio_io import AudioDataError
from keras_audio_cnn.evaluation import EvaluationError
from keras_audio_cnn.frontend import ClipSettingsError
from keras_audio_cnn.model import ModelConfigError
from keras_audio_cnn.training import RunError

USER_ERRORS = (AudioDataError, ClipSettingsError, EvaluationError, ModelConfigError, RunError)


def run_or_exit(program, fn, *args, **kwargs):
    """Calls `fn`; a user-fixable error exits with status 1 and one line."""
    try:
        return fn(*args, **kwargs)
    except USER_ERRORS as error:
        message = " ".join(str(error).split())
        sys.exit(f"{program}: error: {message}")
