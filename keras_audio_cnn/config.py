"""Every option of a `train.py` run: the one home of its defaults, help and checks.

`TrainConfig` groups the options (data, model, optimisation, Ray) as dataclasses.
Each field is declared with `option(...)`: its default, its help text and, for a
fixed set of values, its `choices`, for a number its `Range`. `cli.define_flags`
derives `train.py`'s absl flags from these fields (a field with choices becomes an
enum flag, a list of choices a comma-separated enum list, a range an absl
validator), and `TrainConfig.from_flags` builds the config back from the flag
values, so a flag and its field can never disagree. A run records
`to_flags()` in its `run.json`: the same flat names and values.

Defaults are the recipe of Palanisamy, Singhania and Yao (2020) and their code:
Adam, learning rate 1e-4, weight decay 1e-3 (PyTorch's coupled L2), batch 32 on one
GPU, 70 epochs, the learning rate times 0.1 every 30 epochs, the paper's pitch-shift
and time-stretch augmentation. The options whose default depends on the backbone's
family (`backbones.RECIPE_OPTIONS`: weights, dropout, weight decay, the learning
rate's decay, AMSGrad, the augmentation) default to None, which `TrainConfig` turns
into the family's value (`backbones.Family.recipe`): a run records, and resumes
with, the values it trained with.

This module imports neither TensorFlow nor Keras (nor absl: `cli.define_flags` makes
the flags), so flags parse in milliseconds.
"""

import dataclasses
import math
import os
import typing

from keras_audio_cnn import backbones
from keras_audio_cnn.errors import ConfigError

CATALOG_PREFIX = "tfds:"
AUGMENT_POLICIES = ("paper", "specaugment", "mixup")
NO_AUGMENT = "none"


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric option takes: finite, within [low, high] (ends open or not)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self, kind=float):
        """E.g. "a whole number of at least 1", "a finite number above 0 and below 1"."""
        parts = []
        if self.low is not None:
            parts.append(f"{'above' if self.low_open else 'at least'} {_number(self.low)}")
        if self.high is not None:
            parts.append(f"{'below' if self.high_open else 'at most'} {_number(self.high)}")
        what = "a whole number of" if kind is int else "a finite number"
        return f"{what} {' and '.join(parts)}" if parts else what


def _number(x):
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


AT_LEAST_0, AT_LEAST_1, ABOVE_0 = Range(0), Range(1), Range(0, low_open=True)


def option(default, help, *, choices=None, valid=None, changes_models=True):
    """A config field with its help text.

    `choices` makes it an enum flag; `valid` (a `Range`) bounds a number (None, where
    it is the default, means "not set"); `changes_models=False` marks an option that
    cannot change a trained model (where and how verbosely a run works), so a rerun
    into the same --model_dir may change it.
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "choices": choices, "valid": valid, "changes_models": changes_models})


def group(cls):
    """A nested group of options, with its own defaults."""
    return dataclasses.field(default_factory=cls)


@dataclasses.dataclass
class DataConfig:
    """Which dataset, where it is, and (for a user's folder) how to cut it."""

    dataset: str = option(
        "esc50",
        "esc50, urbansound8k, gtzan (gtzan/fault_filtered), audio_folder (with --audio_dir), "
        "or tfds:NAME for a TFDS catalog audio dataset.")
    data_dir: str | None = option(
        None, "TFDS data directory (default: TFDS's, ~/tensorflow_datasets).",
        changes_models=False)
    manual_dir: str | None = option(
        None, "Directory holding the dataset's archive for offline preparation.",
        changes_models=False)
    audio_dir: str | None = option(
        None, "audio_folder: a folder with one sub-folder of audio files per class.")
    sample_rate: int | None = option(
        None, "The rate the data is prepared at, in Hz (default: the backbone's, e.g. 32000 "
        "for panns_cnn14; ImageNet backbones: the dataset's own): picks the dataset's config "
        "at that rate (esc50 at 32000 is esc50/32000hz; a rate it lacks is refused); "
        "audio_folder: the rate its files are resampled to (default 22050); tfds:NAME: must "
        "be its own.",
        valid=AT_LEAST_1)
    clip_seconds: float | None = option(
        None, "audio_folder: clip length (default: the longest file, at most 10 s).",
        valid=ABOVE_0)
    num_folds: int | None = option(
        None, "audio_folder: number of folds (default 5); each file's fold is a hash of its path "
        "unless folds.csv gives it.",
        valid=Range(2))


@dataclasses.dataclass
class ModelConfig:
    """The network: a backbone family's frontend, backbone and head (`backbones`)."""

    backbone: str = option("DenseNet201", f"The network: {backbones.names_text()}.")
    weights: str | None = option(
        None, "The backbone's weights: imagenet (ImageNet backbones' default), audioset "
        "(PANNs' default: the official checkpoint, downloaded once and cached), none "
        "(random), or a file: a Keras weights file of an ImageNet backbone, a PANNs .pth "
        "checkpoint.")
    trainable: str = option(
        "all",
        "all: fine-tune everything; head: freeze the backbone; from:<block>: freeze the "
        "backbone's layers before that block (e.g. from:conv4_block1 for DenseNet201, "
        "from:conv_block4 for panns_cnn14).")
    reinit_from: str | None = option(
        None,
        "Re-initialise the backbone from this block on, keeping the (pretrained) layers "
        "before it.")
    dropout: float | None = option(
        None, "Dropout before the output layer (default: 0 for ImageNet backbones, 0.5 for "
        "PANNs as in their transfer recipe).", valid=Range(0, 1, high_open=True))


@dataclasses.dataclass
class OptimConfig:
    """The optimisation recipe (Adam with coupled L2, step decay, precise BN)."""

    epochs: int = option(70, "Training epochs per fold.", valid=AT_LEAST_1)
    batch_size: int = option(
        32, "Clips per step on each replica (GPU); the global batch is batch_size x replicas.",
        valid=AT_LEAST_1)
    learning_rate: float = option(
        1e-4, "Adam's initial learning rate on one replica (see --lr_scaling).", valid=ABOVE_0)
    lr_scaling: str = option(
        "linear",
        "How the learning rate grows with the replicas (and so the global batch): linear "
        "(x replicas, Goyal et al. 2017), sqrt (x sqrt(replicas), Malladi et al. 2022 for "
        "Adam) or none.",
        choices=("linear", "sqrt", "none"))
    weight_decay: float | None = option(
        None, "Coupled L2 weight decay (PyTorch Adam's weight_decay; default: 1e-3 for "
        "ImageNet backbones, the paper's, 0 for PANNs).", valid=AT_LEAST_0)
    lr_decay_epochs: int = option(
        30, "Multiply the learning rate by --lr_decay_factor every this many epochs.",
        valid=AT_LEAST_1)
    lr_decay_factor: float | None = option(
        None, "Step decay factor of the learning rate (default: 0.1 for ImageNet backbones, "
        "1 (constant) for PANNs).", valid=ABOVE_0)
    amsgrad: bool | None = option(
        None, "Adam's AMSGrad variant (default: off for ImageNet backbones, on for PANNs, as "
        "in their transfer recipe).")
    precise_bn: bool = option(
        True, "Re-estimate BatchNorm statistics over the training folds before evaluating.")


@dataclasses.dataclass
class RayConfig:
    """`--ray_*`: every model of the run as a task of a Ray cluster (`ray_runner`)."""

    FLAG_PREFIX = "ray_"

    address: str | None = option(
        None,
        "Train every model of the run (folds x runs) as a task of a Ray cluster: local (start "
        "one on this machine), auto (the cluster this machine joined with `ray start`), "
        "HOST:6379, or ray://HOST:10001. --model_dir and --data_dir must be storage every "
        "node sees (shared file system or gs://). Needs pip install -e \".[ray]\".",
        changes_models=False)
    gpus_per_task: int | None = option(
        None,
        "With --ray_address: GPUs per model; a model uses all of them under MirroredStrategy "
        "(default: 1 if the cluster has GPUs, else 0).", valid=AT_LEAST_0, changes_models=False)
    cpus_per_task: int = option(
        1, "With --ray_address: CPUs per model, also its TensorFlow intra-op threads.",
        valid=AT_LEAST_1, changes_models=False)
    retries: int = option(
        2,
        "With --ray_address: times a model is retried after an error or a lost worker before "
        "it is reported as failed (a NaN loss is never retried).", valid=AT_LEAST_0, changes_models=False)


@dataclasses.dataclass
class TrainConfig:
    """Everything one `train.py` run depends on; defaults are the paper's recipe."""

    data: DataConfig = group(DataConfig)
    model: ModelConfig = group(ModelConfig)
    optim: OptimConfig = group(OptimConfig)
    augment: tuple[str, ...] | None = option(
        None,
        "none, or a comma list of: paper (random pitch shift of -2..2 semitones and time "
        "stretch 0.9..1.2), specaugment (time and frequency masks), mixup. ImageNet "
        "backbones augment an added copy of every clip (default: paper); PANNs augment every "
        "training clip (default: specaugment with their mask widths).",
        choices=(NO_AUGMENT, *AUGMENT_POLICIES))
    folds: tuple[int, ...] = option(
        (), "Folds to hold out, e.g. 1,3 (default: every fold); a rerun into the same "
        "--model_dir adds folds to the run.", valid=AT_LEAST_1, changes_models=False)
    runs: int = option(1, "Models per fold, with different seeds (evaluate.py ensembles them).",
                       valid=AT_LEAST_1)
    seed: int = option(0, "Random seed (fold k, run r use seed + 1000 (r - 1) + k).",
                       valid=Range(0, 2**31 - 1))  # numpy and TensorFlow seeds
    deterministic: bool = option(
        False, "TensorFlow op determinism: bit-identical reruns on one machine.")
    precision: str = option(
        "float32",
        "float32, or mixed: the backbone computes in float16 on GPUs and in bfloat16 on CPUs "
        "with bfloat16 instructions (AVX512_BF16 or AMX), float32 elsewhere; the frontend, "
        "the logits and the saved models stay float32.",
        choices=("float32", "mixed"))
    jit_compile: str = option(
        "auto",
        "XLA compilation of the training step: true, false, or auto "
        "(on with one GPU; off on CPUs, with several GPUs and with --deterministic).",
        choices=("auto", "true", "false"))
    model_dir: str | None = option(
        None, "Output directory (default: runs/<dataset>_<backbone>).", changes_models=False)
    overwrite: bool = option(
        False, "Delete what an earlier run wrote in --model_dir (its records, summary, "
        "evaluation and models) and start afresh; without it, a rerun resumes the run and "
        "refuses options that would change its models.", changes_models=False)
    verbose: int = option(
        1, "Keras fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch.",
        valid=Range(0, 2), changes_models=False)
    ray: RayConfig = group(RayConfig)

    def __post_init__(self):
        self._apply_recipe()
        self.augment = _policies(self.augment)
        self.folds = tuple(int(k) for k in self.folds)
        for name, field, value in options_of(self):
            for item in value if isinstance(value, tuple) else (value,):
                message = problem(name, field, item)
                if message:
                    raise ConfigError(message)

    def _apply_recipe(self):
        """Options left None take the default of the backbone's family."""
        recipe = backbones.family_of(self.model.backbone).recipe
        for group in (self, self.model, self.optim):
            for field in dataclasses.fields(group):
                if field.name in recipe and getattr(group, field.name) is None:
                    setattr(group, field.name, recipe[field.name])

    def resolved_model_dir(self):
        """`--model_dir`, or `runs/<dataset>_<backbone>` by default."""
        dataset = self.data.dataset.replace(CATALOG_PREFIX, "").replace("/", "_")
        return self.model_dir or os.path.join("runs", f"{dataset}_{self.model.backbone}")

    def to_flags(self):
        """{flag name: value}, flat, as `run.json` records them (augment as "a,b")."""
        return {name: recorded_value(field, value) for name, field, value in options_of(self)}

    @classmethod
    def from_flags(cls, values):
        """A config from flat flag names (as in `run.json`); missing names keep defaults.

        Names that are not options are ignored: `run.json` also records what the run
        derived (its tasks, the resolved model_dir).
        """

        def build(group_cls, prefix=""):
            kwargs = {}
            for field in dataclasses.fields(group_cls):
                if _is_group(field):
                    nested = field.default_factory
                    kwargs[field.name] = build(nested, getattr(nested, "FLAG_PREFIX", ""))
                elif prefix + field.name in values:
                    kwargs[field.name] = values[prefix + field.name]
            return group_cls(**kwargs)

        return build(cls)

    def model_differences(self, recorded):
        """The options that differ from `recorded` (a run.json) and would change a model.

        Returns `["--epochs=5 (recorded: 1)", ...]`; options that cannot change a
        trained model (`changes_models=False`) are left out.
        """
        before = TrainConfig.from_flags(recorded).to_flags()
        now = self.to_flags()
        changing = {name for name, field, _ in options_of(self) if field.metadata["changes_models"]}
        return [f"--{name}={now[name]} (recorded: {before[name]})"
                for name in now if name in changing and now[name] != before[name]]

    def replace(self, **flag_values):
        """A copy with some options changed, by flag name (`epochs=1`, `ray_address=...`).

        Another backbone brings its family's recipe defaults, except for the options given.
        """
        unknown = sorted(set(flag_values) - set(self.to_flags()))
        if unknown:
            raise TypeError(f"no such option: {', '.join(unknown)}")
        values = self.to_flags()
        if backbones.family_of(flag_values.get("backbone", self.model.backbone)) != \
                backbones.family_of(self.model.backbone):
            values = {k: v for k, v in values.items() if k not in backbones.RECIPE_OPTIONS}
        return TrainConfig.from_flags({**values, **flag_values})


def _is_group(field):
    return "help" not in field.metadata


def options_of(config):
    """(flag name, dataclass field, value) of every option of `config`, in declaration order."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if _is_group(field):
            prefix = getattr(type(value), "FLAG_PREFIX", "")
            for name, leaf, leaf_value in options_of(value):
                yield prefix + name, leaf, leaf_value
        else:
            yield field.name, field, value


def problem(name, field, value):
    """Why `value` cannot be the value of option `name` (a message), or None."""
    choices, valid = field.metadata["choices"], field.metadata["valid"]
    if choices and value not in choices:
        return f"unknown --{name}={value!r}; use one of {', '.join(choices)}"
    if valid and value is not None and value not in valid:
        return f"--{name}={value!r} must be {valid.describe(value_type(field))}"
    return None


def _policies(value):
    """The augmentation policies of "paper,mixup", ("paper", "mixup") or "none"."""
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [item.strip() for item in items if item.strip()]
    return tuple(item for item in items if item != NO_AUGMENT)


def recorded_value(field, value):
    """A value as run.json records it: policies as "paper,mixup" (or "none"), folds as a list."""
    if field.name == "augment":
        return ",".join(value) or NO_AUGMENT
    return list(value) if isinstance(value, tuple) else value


def _list_type(field):
    """`tuple[...]` where the option takes a list (e.g. `tuple[str, ...] | None`), else None."""
    for kind in (field.type, *typing.get_args(field.type)):
        if typing.get_origin(kind) is tuple:
            return kind
    return None


def is_list(field):
    """Whether an option takes a comma-separated list (its values are tuples)."""
    return _list_type(field) is not None


def value_type(field):
    """The Python type of an option's values: str, int, float or bool (a tuple's elements)."""
    kind = _list_type(field) or field.type
    args = [a for a in typing.get_args(kind) if a is not type(None) and a is not Ellipsis]
    return args[0] if args else kind
