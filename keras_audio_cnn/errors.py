"""Errors a user can fix: each message is one line saying what, where and what to do.

The command-line programs print these as `<program>: error: <message>` and exit
with status 1 (`cli.run_or_exit`); anything else is a bug and keeps its traceback.
`AudioDataError` (bad audio or dataset files) lives with the TFDS builders, which
depend on nothing in this package.
"""

from tfds_builders.audio_io import AudioDataError, one_line


class UserError(ValueError):
    """A problem the user must fix; its message is folded onto one line."""

    def __init__(self, message):
        super().__init__(one_line(message))


class ConfigError(UserError):
    """An option value that cannot work (a flag out of range, an unknown choice)."""


class RunError(UserError):
    """A run option that does not fit the data or the machine (a fold it lacks...)."""


class ModelConfigError(UserError):
    """A model option the user must change (unknown backbone, missing weights file...)."""


class EvaluationError(UserError):
    """Model directories that cannot be evaluated as asked."""


class PredictionError(UserError):
    """Model directories, inputs or outputs that predict.py or export.py cannot use as asked."""


class TrainingFailed(RuntimeError):
    """A model whose training cannot succeed as configured (a NaN or infinite loss)."""


USER_ERRORS = (UserError, AudioDataError)

__all__ = ["AudioDataError", "ConfigError", "EvaluationError", "ModelConfigError",
           "PredictionError", "RunError", "TrainingFailed", "USER_ERRORS", "UserError", "one_line"]
