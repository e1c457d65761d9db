"""Waveform-in classifiers of every backbone family, and what they all share.

A model is a frontend (the waveform's log-mel image, ending in the layer
`frontend.IMAGE_LAYER`), its normalisation, a nested backbone model, and a head
ending in "predictions"; each family (`backbones`) builds its own. What is done
to any of them lives here: which layers train (`--trainable`), which are
re-initialised (`--reinit_from`), the dtype policy of a saved model, the fast
kernels of a loaded one.
"""

import re

import keras

from keras_audio_cnn import backbones, frontend, fused_batch_norm
from keras_audio_cnn.errors import ModelConfigError

# Block names inside backbone layer names: DenseNet/ResNet "conv4_block1", EfficientNet
# "block5a", MobileNetV3 "expanded_conv_5", Inception "mixed5", PANNs "conv_block3".
_BLOCK_PATTERNS = (
    re.compile(r"^(conv\d+_block\d+)_"),
    re.compile(r"^(block\d+[a-z])_"),
    re.compile(r"^(expanded_conv(?:_\d+)?)_"),
    re.compile(r"^(mixed\d+)(?:_|$)"),
    re.compile(r"^(conv_block\d+)_"),
)


def _block_of(layer_name):
    for pattern in _BLOCK_PATTERNS:
        match = pattern.match(layer_name)
        if match:
            return match.group(1)
    return None


def block_names(backbone_model):
    """The backbone's block names, in order (e.g. "conv4_block1" of DenseNet)."""
    names = []
    for layer in backbone_model.layers:
        block = _block_of(layer.name)
        if block and block not in names:
            names.append(block)
    return names


def block_start(backbone_model, name, flag):
    """Index of the first layer of block `name` (or of the layer so named)."""
    for index, layer in enumerate(backbone_model.layers):
        if layer.name == name or _block_of(layer.name) == name:
            return index
    blocks = block_names(backbone_model) or [layer.name for layer in backbone_model.layers]
    raise ModelConfigError(
        f"{flag}: {backbone_model.name} has no block or layer {name!r}; its blocks are: "
        f"{', '.join(blocks)}"
    )


def _check_trainable(trainable):
    if trainable in ("all", "head") or (trainable.startswith("from:") and trainable[5:]):
        return
    raise ModelConfigError(
        f"unknown --trainable={trainable!r}; choose all, head, or from:<block> "
        "(e.g. from:conv4_block1 for DenseNet201)"
    )


def family(backbone):
    """The module of a backbone's family (`backbones.imagenet`, `backbones.panns`)."""
    return backbones.load(backbone)


def data_sample_rate(run_config):
    """The rate a run's data is prepared at: `--sample_rate`, else the backbone's (a PANNs
    backbone takes only its checkpoint's), else None (the dataset's own)."""
    backbone = run_config.model.backbone
    return run_config.data.sample_rate or family(backbone).sample_rate(backbone)


def channel_names(backbone):
    """What each channel of a backbone's log-mel image is (for figures)."""
    return family(backbone).channel_names(backbone)


def check_options(backbone, weights, trainable, reinit_from=None):
    """Raises `ModelConfigError` for options `build_model` would refuse."""
    module = family(backbone)
    module.check_weights(backbone, weights)
    _check_trainable(trainable)
    if trainable.startswith("from:") or reinit_from:
        probe = module.probe(backbone)  # block names do not depend on the input or weights
        if trainable.startswith("from:"):
            block_start(probe, trainable[5:], "--trainable")
        if reinit_from:
            block_start(probe, reinit_from, "--reinit_from")


def fetch_weights(backbone, weights):
    """Gets a backbone's pretrained weights ready before any data work: a PANNs checkpoint
    is downloaded, checked and converted once (a failure costs no dataset download);
    ImageNet weights come with the model's first build (Keras caches them)."""
    fetch = getattr(family(backbone), "fetch_weights", None)
    if fetch:
        fetch(backbone, weights or backbones.family_of(backbone).recipe["weights"])


def set_trainable(backbone_model, trainable):
    """Applies --trainable: all, head (backbone frozen), from:<block> (earlier frozen)."""
    _check_trainable(trainable)
    backbone_model.trainable = trainable != "head"
    if trainable.startswith("from:"):
        start = block_start(backbone_model, trainable[5:], "--trainable")
        for layer in backbone_model.layers[:start]:
            layer.trainable = False


def reinitialize_from(backbone_model, block):
    """Re-draws the weights of every layer from `block` on with its own initialisers.

    The paper's question "how much of the pretrained weights is useful": layers
    before the block keep their (pretrained) weights. Returns the number of
    variables re-initialised.
    """
    start = block_start(backbone_model, block, "--reinit_from")
    count = 0
    for layer in backbone_model.layers[start:]:
        for variable in layer.weights:
            short = variable.name
            initializer = getattr(layer, f"{short}_initializer", None)
            if initializer is None and short.endswith("_kernel"):  # depthwise_kernel
                initializer = getattr(layer, short.replace("_kernel", "_initializer"), None)
            if initializer is None:
                raise ModelConfigError(
                    f"--reinit_from: cannot re-initialise {variable.path} "
                    f"(layer {layer.name} has no {short}_initializer)"
                )
            variable.assign(keras.initializers.get(initializer)(variable.shape, variable.dtype))
            count += 1
    return count


def build_model(
    backbone,
    num_classes,
    sample_rate,
    num_samples,
    *,
    weights=None,
    trainable="all",
    reinit_from=None,
    dropout=None,
    mean=None,
    variance=None,
    dtype_policy="float32",
):
    """Builds the classifier from raw waveforms to class logits, of any backbone family.

    Args:
        backbone: a `--backbone` name: a `keras.applications` constructor name, e.g.
            "DenseNet201" (`backbones.imagenet`), or "panns_cnn14" (`backbones.panns`).
        num_classes: size of the output layer.
        sample_rate: sample rate of the input waveforms, in Hz (a PANNs backbone takes
            only its checkpoint's rate).
        num_samples: samples per clip; the input is float32 `[batch, num_samples]`
            in [-1, 1].
        weights: the family's pretrained weights ("imagenet", "audioset"), "none"
            (random initialisation) or a file (a Keras weights file for an ImageNet
            backbone, a PANNs `.pth` checkpoint); default: the family's
            (`backbones.Family.recipe`).
        trainable: "all" fine-tunes everything; "head" freezes the backbone;
            "from:<block>" freezes the backbone's layers before that block.
        reinit_from: a backbone block name: re-initialise every layer from it on
            (after loading `weights`), keeping the weights before it.
        dropout: dropout rate before the output layer (default: the family's).
        mean, variance: per-channel statistics of the training data's
            spectrogram images (`recipe.image_statistics`), for families whose
            frontend is standardised with them (ImageNet); zeros and ones when
            omitted (set them before training).
        dtype_policy: the Keras dtype policy of the backbone and the layers after it,
            e.g. "mixed_bfloat16" (`devices.resolve`). The frontend, its
            normalisation and the predictions layer are float32 in any case, so
            the logits (and the softmax of the loss) are float32. The global
            policy is restored before returning.

    Returns:
        An uncompiled `keras.Model` whose layers are named: "waveform", the frontend
        ending in "logmel_image" (`frontend.IMAGE_LAYER`), its normalisation, the
        nested backbone model, then "dropout" and "predictions" (and, per family,
        "pool").
    """
    _check_trainable(trainable)
    recipe = backbones.family_of(backbone).recipe
    model = family(backbone).build_model(
        backbone, num_classes, sample_rate, num_samples,
        weights=recipe["weights"] if weights is None else weights,
        dropout=recipe["dropout"] if dropout is None else dropout,
        mean=mean, variance=variance, dtype_policy=dtype_policy)
    base = get_backbone(model)
    set_trainable(base, trainable)
    if trainable != "all":  # the frontend's normalisation (PANNs' bn0) precedes every block
        for layer in _normalization_layers(model):
            layer.trainable = False
    if reinit_from:
        reinitialize_from(base, reinit_from)
    return model


def _normalization_layers(model):
    """The layers between the frontend's image and the backbone."""
    layers = model.layers
    first = layers.index(model.get_layer(frontend.IMAGE_LAYER)) + 1
    return layers[first:layers.index(get_backbone(model))]


def get_backbone(model):
    """The nested `keras.applications` model inside a model from `build_model`."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            return layer
    raise ValueError(f"model {model.name!r} has no nested backbone model")


def set_dtype_policy(model, policy):
    """Makes a model from `build_model` compute as `build_model(dtype_policy=policy)`
    builds it: the backbone and the layers between it and "predictions" (pool,
    dropout) under `policy` (e.g. "mixed_bfloat16"), the frontend, normalisation,
    predictions and what follows them in float32.

    Mixed policies keep float32 variables, so the weights are untouched: only the
    arithmetic of the calls traced from now on changes. Saved models are float32
    (`recipe.float32_copy`); this is how predict.py runs one in mixed precision.
    """
    backbone = get_backbone(model)
    layers = model.layers
    head = layers[layers.index(backbone) + 1:layers.index(model.get_layer("predictions"))]
    for layer in [backbone, *backbone.layers, *head]:
        layer.dtype_policy = policy


def use_fast_kernels(model):
    """Speed only, the same probabilities (to float32 rounding): BatchNorm layers run
    TensorFlow's fused kernel (`fused_batch_norm.use_fused_kernels`) and, on a CPU, the
    frontend computes one clip at a time (`frontend.use_per_clip_kernels`), as a model
    fresh from `build_model` does. For a model loaded from a `.keras` file."""
    fused_batch_norm.use_fused_kernels(model)
    frontend.use_per_clip_kernels(model)

