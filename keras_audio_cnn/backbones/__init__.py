"""Backbone families: which `--backbone` names exist, and the recipe each trains with.

A family is one module that builds its models (`module`): its frontend (what the
waveform becomes before the network: sample rate, STFT, mel bank, log,
normalisation), its network, its weights, and what training needs of them. Two
families exist:

- `imagenet` (`backbones.imagenet`): the paper's 3-channel multi-resolution log-mel
  image in front of any `keras.applications` model, with ImageNet weights; the
  recipe of Palanisamy, Singhania and Yao (2020);
- `panns` (`backbones.panns`): the AudioSet-trained CNN14 networks of PANNs (Kong
  et al. 2020) with their own 32 kHz (16 kHz) log-mel frontend; the recipe of PANNs'
  transfer experiments (Adam with AMSGrad at 1e-4, no weight decay, a constant
  learning rate, their SpecAugment on every clip, dropout 0.5 before the new head).

What is declared here is what `train.py` needs before anything is built: the names,
and each family's defaults of the options that differ between recipes. This module
imports neither TensorFlow nor Keras (`config` uses it while flags parse); `load`
imports a family's module. Adding a family (EfficientAT, PaSST) is one module and
one `Family` entry.
"""

import dataclasses
import importlib

from keras_audio_cnn.errors import ModelConfigError


@dataclasses.dataclass(frozen=True)
class Family:
    """A backbone family: its names, its module, its recipe defaults.

    `recipe` holds `train.py` option defaults by flag name; options not named keep
    the defaults of `config.TrainConfig`. `augment_copies`: whether the image
    augmentations act on an added copy of every clip (the paper's protocol) or on
    every training clip itself (PANNs'). `mixup_alpha`: the Beta distribution of
    `--augment=mixup`.
    """

    name: str
    module: str
    backbones: tuple  # its names; empty for the family of every keras.applications name
    recipe: dict
    augment_copies: bool
    mixup_alpha: float
    summary: str  # for --backbone's help and the error listing the names


IMAGENET = Family(
    name="imagenet",
    module="keras_audio_cnn.backbones.imagenet",
    backbones=(),
    recipe=dict(weights="imagenet", weight_decay=1e-3, lr_decay_factor=0.1, amsgrad=False,
                dropout=0.0, augment="paper"),
    augment_copies=True,
    mixup_alpha=0.2,
    summary="any keras.applications model (DenseNet201, ResNet50, EfficientNetB0, ...)",
)

PANNS = Family(
    name="panns",
    module="keras_audio_cnn.backbones.panns",
    backbones=("panns_cnn14", "panns_cnn14_16k", "panns_cnn14_dlm"),
    recipe=dict(weights="audioset", weight_decay=0.0, lr_decay_factor=1.0, amsgrad=True,
                dropout=0.5, augment="specaugment"),
    augment_copies=False,
    mixup_alpha=1.0,
    summary="panns_cnn14, panns_cnn14_16k, panns_cnn14_dlm (AudioSet CNN14)",
)

FAMILIES = (IMAGENET, PANNS)
# The options whose default depends on the family (every family names them all).
RECIPE_OPTIONS = tuple(IMAGENET.recipe)
assert all(set(f.recipe) == set(RECIPE_OPTIONS) for f in FAMILIES)


def family_of(backbone):
    """The `Family` of a backbone name (`imagenet` for any name no other family has)."""
    for family in FAMILIES:
        if backbone in family.backbones:
            return family
    return IMAGENET


def load(backbone):
    """The module of a backbone's family (imports Keras and TensorFlow)."""
    return importlib.import_module(family_of(backbone).module)


def names_text():
    """Every family's names, for help texts and errors."""
    return "; ".join(family.summary for family in FAMILIES)


def unknown(backbone, known):
    """The `ModelConfigError` of a name no family has."""
    return ModelConfigError(f"unknown backbone {backbone!r}; choose {names_text()}; the "
                            f"keras.applications names are: {', '.join(known)}")
