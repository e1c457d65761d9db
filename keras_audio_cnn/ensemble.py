"""Every finished model of one or more runs, as one classifier averaging their probabilities.

`predict.py` and `export.py` use a run the way a user means it: all of its
finished models (every fold, and every `--runs` model of a fold) averaged, and
with several `--model_dir`s (e.g. one per backbone) the models of all of them.
Which models a run has, and which are finished, comes from `rundir`; what a
model takes and returns (its classes, sample rate and clip length) from its own
`metrics.json`. Models of other classes, rates or clip lengths are refused.

`pretrained` makes the same kind of classifier from a network pretrained on AudioSet
(PANNs CNN14), which tags any recording with AudioSet's 527 classes without training:
its probabilities are each class's sigmoid (several tags can hold at once), where a
run's are a softmax over its classes.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from keras_audio_cnn import devices, fused_batch_norm, model as model_lib, rundir
from keras_audio_cnn.backbones import panns
from keras_audio_cnn.errors import ConfigError, PredictionError

# load_ensemble's precisions: train.py's --precision choices.
PRECISIONS = ("float32", "mixed")
# How a model's logits become probabilities: a run's single-label softmax, a tagger's
# independent sigmoid per class.
ACTIVATIONS = ("softmax", "sigmoid")
# The networks `pretrained` tags with (predict.py and export.py --pretrained).
PRETRAINED = tuple(panns.VARIANTS)
# What a finished model records about its input and output (docs/run_directory.md).
_DESCRIPTION = ("class_names", "sample_rate", "num_samples")


@dataclasses.dataclass
class Ensemble:
    """The finished models of some runs, and what they all take and return."""

    model_dirs: list  # the runs, as given
    members: list  # the model directories averaged, e.g. runs/x/fold1/run2
    member_runs: list  # the run (one of model_dirs) of each member, in the same order
    models: list  # their Keras models, in the same order
    class_names: list  # the classes, in output order
    sample_rate: int  # Hz of the waveforms the models take
    num_samples: int  # samples per clip the models take
    dtype_policy: str = "float32"  # what the backbones compute in (`load_ensemble`'s precision)
    backbones: list = None  # the --backbone of each member, in the same order
    activation: str = "softmax"  # "sigmoid" for a tagger (`pretrained`)

    @property
    def clip_seconds(self):
        return self.num_samples / self.sample_rate

    _logits: object = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def logits_function(self):
        """A tf.function from waveforms `[batch, num_samples]` to every model's logits,
        `[models, batch, classes]`.

        Traced once for any batch size and kept with the ensemble: tracing the models
        takes seconds (about 5 s for DenseNet201 on a CPU), which a last, partial batch
        or another `predict.classify` call would otherwise pay again. On a CPU the
        models' frontends compute one clip at a time from then on
        (`frontend.use_per_clip_kernels`).
        """
        if self._logits is None:
            models = self.models
            for model in models:
                model_lib.use_fast_kernels(model)
            self._logits = tf.function(
                lambda waveform: tf.stack([m(waveform, training=False) for m in models]),
                input_signature=[tf.TensorSpec([None, self.num_samples], tf.float32)])
        return self._logits


def mean_probabilities(logits, activation="softmax"):
    """The models' probabilities (in float64, as evaluate.py computes them), averaged:
    `[models, batch, classes]` logits -> `[batch, classes]`; each model's softmax, or
    with `activation="sigmoid"` each class's sigmoid."""
    logits = np.asarray(logits, dtype=np.float64)
    if activation == "sigmoid":
        return (0.5 * (1.0 + np.tanh(0.5 * logits))).mean(axis=0)  # sigmoid, overflow-free
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True)).mean(axis=0)


def load_ensemble(model_dirs, log=print, precision="float32"):
    """Loads every finished model of `model_dirs` (a directory or a list of them).

    Unfinished models are left out with a line through `log`. `precision` is
    train.py's `--precision`: "float32" computes as the saved models are (float32),
    "mixed" computes the backbones in bfloat16 on CPUs with bfloat16 instructions and
    in float16 on GPUs (`devices.resolve`; elsewhere float32, with a line through
    `log`): faster there, with probabilities slightly off float32's.

    Raises:
      ConfigError: a precision other than "float32" and "mixed".
      RunDirError: a directory that does not exist or holds no train.py run.
      PredictionError: no finished model, models of other classes, sample rates or
        clip lengths, or a `model.keras` that cannot be loaded.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    model_dirs = [model_dirs] if isinstance(model_dirs, str) else list(model_dirs)
    members = []
    for model_dir in model_dirs:
        members += _finished_members(model_dir, log)
    descriptions = [_describe(model_dir, run_dir) for model_dir, run_dir in members]
    first_dir, first = members[0][1], descriptions[0]
    for (_, run_dir), description in zip(members[1:], descriptions[1:]):
        for key in _DESCRIPTION:
            if description[key] != first[key]:
                raise PredictionError(
                    f"{run_dir} and {first_dir} have different {key} "
                    f"({_short(description[key])} vs {_short(first[key])}); average only "
                    "runs trained on the same classes, sample rate and clip length")
    settings = devices.settings(precision, "false")
    if settings.note:
        log(settings.note)
    models = [_load_model(model_dir, run_dir) for model_dir, run_dir in members]
    for model in models:
        model_lib.set_dtype_policy(model, settings.dtype_policy)
    backbone_of = {d: rundir.read_run(d).get("backbone") for d in model_dirs}
    return Ensemble(model_dirs, [run_dir for _, run_dir in members],
                    [model_dir for model_dir, _ in members], models,
                    list(first["class_names"]), int(first["sample_rate"]),
                    int(first["num_samples"]), settings.dtype_policy,
                    backbones=[backbone_of[model_dir] for model_dir, _ in members])


def pretrained(backbone, weights="audioset", log=print, precision="float32"):
    """The AudioSet tagger of a pretrained network as a one-member `Ensemble`: AudioSet's
    527 classes, sigmoid probabilities, windows of an AudioSet clip (10 s).

    `weights`: "audioset" (the official checkpoint: cached, or downloaded once and
    converted) or the path of a `.pth` checkpoint downloaded by hand.

    Raises:
      ConfigError: a name that is not one of `PRETRAINED`, or an unknown precision.
      ModelConfigError: weights that cannot be had (offline, a wrong file).
    """
    if backbone not in PRETRAINED:
        raise ConfigError(f"--pretrained={backbone}: choose one of {', '.join(PRETRAINED)}")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    settings = devices.settings(precision, "false")
    if settings.note:
        log(settings.note)
    model, class_names = panns.tagger(backbone, weights)
    model_lib.set_dtype_policy(model, settings.dtype_policy)
    fused_batch_norm.use_fused_kernels(model)
    spec = panns.variant(backbone)
    label = f"{backbone} ({'AudioSet' if weights == 'audioset' else weights})"
    return Ensemble([], [label], [None], [model], list(class_names), spec.sample_rate,
                    int(model.input_shape[-1]), settings.dtype_policy, backbones=[backbone],
                    activation="sigmoid")


def _finished_members(model_dir, log):
    """[(model_dir, run_dir)] of a run's finished models; refuses a run with none."""
    run = rundir.read_run(model_dir)
    tasks = run.get("tasks") or []
    finished = [(model_dir, d) for task in tasks for d in rundir.finished_models(model_dir, task)]
    unfinished = [d for task in tasks for d in rundir.unfinished_models(model_dir, task)]
    if finished:
        for directory in unfinished:
            log(f"{directory}: no finished model (no {rundir.METRICS_JSON}), left out")
        return finished
    if tf.io.gfile.exists(os.path.join(model_dir, rundir.SUMMARY_JSON)):
        raise PredictionError(
            f"{model_dir}: the run ended without a finished model (every model failed; "
            f"see {os.path.join(model_dir, rundir.SUMMARY_MD)}); fix the cause and rerun its "
            "train.py command")
    raise PredictionError(
        f"{model_dir}: no finished model yet (no */{rundir.METRICS_JSON}; "
        f"{len(unfinished)} started): let train.py finish a model first, or rerun its "
        "train.py command to resume it")


def _describe(model_dir, run_dir):
    """A finished model's classes, sample rate and clip length, from its metrics.json
    (or, for a model trained before metrics.json recorded them, the run's summary.json)."""
    metrics = rundir.read_metrics(run_dir)
    if all(metrics.get(key) is not None for key in _DESCRIPTION):
        return {key: metrics[key] for key in _DESCRIPTION}
    summary_path = os.path.join(model_dir, rundir.SUMMARY_JSON)
    summary = rundir.read_json(summary_path) if tf.io.gfile.exists(summary_path) else {}
    if all(summary.get(key) is not None for key in _DESCRIPTION):
        return {key: summary[key] for key in _DESCRIPTION}
    raise PredictionError(
        f"{os.path.join(run_dir, rundir.METRICS_JSON)} does not record the model's "
        f"{', '.join(_DESCRIPTION)}, nor does {summary_path}: retrain that model with this "
        "version of train.py (delete its directory and rerun the train.py command)")


def _load_model(model_dir, run_dir):
    model = rundir.load_model(run_dir, model_dir, PredictionError)
    fused_batch_norm.use_fused_kernels(model)  # speed only: the same probabilities
    return model


def _short(value):
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."
