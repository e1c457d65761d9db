"""What the command-line entry points share: errors a user can fix are one line."""

import errno
import sys

from absl import flags

from keras_audio_cnn.errors import USER_ERRORS, one_line


def flags_parser(program):
    """For `absl.app.run(main, flags_parser=...)`: a bad flag value exits with one line,
    `<program>: error: flag --name=value: why`, instead of absl's two."""

    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as error:
            sys.exit(f"{program}: error: {one_line(error)}")

    return parse


def run_or_exit(program, fn, *args, **kwargs):
    """Calls `fn`; a user-fixable error, or a full disk, exits with status 1 and one line."""
    try:
        return fn(*args, **kwargs)
    except USER_ERRORS as error:
        sys.exit(f"{program}: error: {one_line(error)}")
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" writing {error.filename}" if error.filename else ""
        sys.exit(f"{program}: error: no space left on the device{where}; free some space, "
                 "then rerun the same command (a train.py run resumes where it stopped)")
