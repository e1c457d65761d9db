"""What the command-line entry points share: flags from the config, one-line errors."""

import errno
import functools
import os
import signal
import sys

from absl import flags

from keras_audio_cnn import backbones, config, interrupts
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
    """Calls `fn`; a user-fixable error, or a full disk, exits with status 1 and one line
    (a closed pipe on stdout with status 1 and no line).

    SIGINT, SIGTERM and SIGHUP stop `fn` as an exception (`interrupts.handled`), so that
    what it was writing is removed on the way out; the program then exits with one
    line and the status 128 + the signal's number (130, 143, 129). Paths are printed as
    the bytes the OS gave, also a name that is not UTF-8.
    """
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")
    try:
        with interrupts.handled():
            result = fn(*args, **kwargs)
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return result
    except KeyboardInterrupt as interrupted:  # Ctrl-C, or an `interrupts.Interrupted`
        if not isinstance(interrupted, interrupts.Interrupted):
            interrupted = interrupts.Interrupted(signal.SIGINT)
        _say(f"{program}: interrupted by {interrupted.name}; stopped without leaving a "
             f"half-written file: {_AGAIN.get(program, 'rerun the same command')}")
        sys.exit(interrupted.exit_status)
    except USER_ERRORS as error:
        sys.exit(f"{program}: error: {one_line(error)}")
    except BrokenPipeError:
        # stdout's reader has gone (`predict.py ... | head`): stop quietly, as Unix
        # tools do; stdout goes to /dev/null so that the exit's flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" writing {error.filename}" if error.filename else ""
        sys.exit(f"{program}: error: no space left on the device{where}; free some space, "
                 "then rerun the same command (a train.py run resumes where it stopped)")


# What rerunning a stopped command does, where it does more than start again.
_AGAIN = {"train.py": "rerun the same command to resume (finished models are kept)"}


def _say(line):
    """`line` on stderr, unless stderr is gone too (a closed terminal's SIGHUP)."""
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass


class _EnumListParser(flags.ListParser):
    """A comma-separated list whose items are each one of `choices`."""

    def __init__(self, choices):
        super().__init__()
        self.choices = choices

    def parse(self, argument):
        items = super().parse(argument)
        bad = [item for item in items if item not in self.choices]
        if bad:
            raise ValueError(f"{bad[0]!r} is not one of {', '.join(self.choices)} "
                             "(give a comma list, e.g. paper,mixup)")
        return items

    def flag_type(self):
        return f"comma list of {'|'.join(self.choices)}"


class _IntListParser(flags.ListParser):
    """A comma-separated list of whole numbers, e.g. 1,3."""

    def parse(self, argument):
        items = super().parse(argument)
        try:
            return [int(item) for item in items]
        except ValueError:
            raise ValueError(f"{argument!r} must be whole numbers, e.g. 1,3") from None

    def flag_type(self):
        return "comma list of whole numbers"


def define_flags(flag_values=flags.FLAGS):
    """Defines one absl flag per option of `config.TrainConfig`, named as `to_flags` names
    them."""
    for name, field, default in config.options_of(config.TrainConfig()):
        help_text, choices = field.metadata["help"], field.metadata["choices"]
        kind = config.value_type(field)
        common = dict(flag_values=flag_values)
        if name in backbones.RECIPE_OPTIONS:
            default = None  # the backbone family's, once the backbone is known
        if config.is_list(field):
            parser = _EnumListParser(choices) if choices else _IntListParser()
            flags.DEFINE(parser, name,
                         None if default is None else config.recorded_value(field, default),
                         help_text, serializer=flags.CsvListSerializer(","), **common)
        elif choices:
            flags.DEFINE_enum(name, default, choices, help_text, **common)
        elif kind is bool:
            flags.DEFINE_boolean(name, default, help_text, **common)
        else:
            define = {str: flags.DEFINE_string, int: flags.DEFINE_integer,
                      float: flags.DEFINE_float}[kind]
            define(name, default, help_text, **common)
        if field.metadata["valid"]:
            flags.register_validator(
                name, functools.partial(_valid_flag_value, name, field),
                message=f"must be {field.metadata['valid'].describe(kind)}", **common)


def _valid_flag_value(name, field, value):
    items = value if isinstance(value, list) else [value]
    return all(config.problem(name, field, item) is None for item in items)


def from_flag_values(flag_values=flags.FLAGS):
    """The `config.TrainConfig` of parsed flags (see `define_flags`)."""
    names = config.TrainConfig().to_flags()
    return config.TrainConfig.from_flags({name: flag_values[name].value for name in names})


def define_ensemble_flags(hop_help):
    """`--model_dir` (repeatable) and `--hop_seconds`, the flags of the programs that use
    every finished model of runs as one classifier (predict.py, export.py), and
    `--pretrained` with its `--weights`, which take a network pretrained on AudioSet
    instead of runs."""
    flags.DEFINE_multi_string(
        "model_dir", None,
        "A directory written by train.py; repeat to average several runs (e.g. backbones).")
    flags.DEFINE_enum(
        "pretrained", None, list(backbones.PANNS.backbones),
        "Instead of --model_dir: tag with a network pretrained on AudioSet, without "
        "training: its 527 AudioSet classes, each with its own (sigmoid) probability.")
    flags.DEFINE_string(
        "weights", "audioset",
        "With --pretrained: audioset (the official checkpoint, downloaded once, checked and "
        "cached) or the path of the .pth checkpoint downloaded by hand.")
    flags.DEFINE_float("hop_seconds", None, hop_help + " (default: half a clip).")

    def one_source(values):
        if bool(values["model_dir"]) == bool(values["pretrained"]):
            raise flags.ValidationError(
                "give either --model_dir (train.py runs) or --pretrained (an AudioSet network)")
        if values["model_dir"] and values["weights"] != "audioset":
            raise flags.ValidationError(
                "--weights goes with --pretrained; a run's models hold their own weights")
        return True

    flags.register_multi_flags_validator(["model_dir", "pretrained", "weights"], one_source)
