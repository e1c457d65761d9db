"""Waveform-in classifiers: log-mel frontend, normalisation, an ImageNet backbone."""

import os
import re

import h5py
import keras
import numpy as np

from keras_audio_cnn import devices, frontend, fused_batch_norm
from keras_audio_cnn.errors import ModelConfigError

# Block names inside keras.applications layer names: DenseNet/ResNet "conv4_block1",
# EfficientNet "block5a", MobileNetV3 "expanded_conv_5", Inception "mixed5".
_BLOCK_PATTERNS = (
    re.compile(r"^(conv\d+_block\d+)_"),
    re.compile(r"^(block\d+[a-z])_"),
    re.compile(r"^(expanded_conv(?:_\d+)?)_"),
    re.compile(r"^(mixed\d+)(?:_|$)"),
)

# Mean and standard deviation of ImageNet RGB pixels (0-255), the input statistics
# ImageNet-trained weights were fitted to.
_IMAGENET_PIXEL_MEAN = np.array([123.675, 116.28, 103.53])
_IMAGENET_PIXEL_STD = np.array([58.395, 57.12, 57.375])


def backbone_names():
    """Names of every `keras.applications` model constructor."""
    return sorted(n for n in dir(keras.applications) if n[:1].isupper())


def _backbone_constructor(name):
    if name not in backbone_names():
        raise ModelConfigError(
            f"unknown backbone {name!r}; choose one of: {', '.join(backbone_names())}"
        )
    return getattr(keras.applications, name)


def backbone_input_statistics(name):
    """Per-channel (mean, std) of the inputs the backbone's weights expect.

    Each `keras.applications` family expects its own input scaling ("torch":
    about N(0, 1); "caffe": mean-subtracted 0-255; "tf": [-1, 1]; EfficientNet and
    ConvNeXt: raw 0-255 with preprocessing inside the model). Passing ImageNet
    pixel statistics through the family's `preprocess_input` gives the statistics
    to map standardised spectrograms onto, whatever the family.
    """
    constructor = _backbone_constructor(name)
    module = __import__(constructor.__module__, fromlist=["preprocess_input"])
    pixels = np.stack([_IMAGENET_PIXEL_MEAN, _IMAGENET_PIXEL_MEAN + _IMAGENET_PIXEL_STD])
    processed = np.asarray(
        module.preprocess_input(pixels[None].astype("float32").copy())
    )[0]
    # caffe mode swaps RGB to BGR; the spectrogram channels have no colour, so
    # only each output channel's location and scale matter.
    return processed[0], processed[1] - processed[0]


def normalization_weights(name, mean, variance):
    """Folds standardisation and the backbone's input statistics into one layer.

    `(x - mean) / sqrt(variance)` followed by `* std_b + mean_b` equals a single
    `keras.layers.Normalization` with the returned mean and variance.
    """
    mean_b, std_b = backbone_input_statistics(name)
    std = np.sqrt(np.asarray(variance, "float64"))
    return (
        np.asarray(mean, "float64") - mean_b * std / std_b,
        (std / std_b) ** 2,
    )


def _resolve_weights(weights):
    if weights in (None, "none"):
        return None
    if weights == "imagenet":
        return "imagenet"
    fix = ("pass --weights=imagenet, --weights=none or the path of a Keras weights file "
           "(.weights.h5 or .h5)")
    if os.path.isdir(weights):
        raise ModelConfigError(f"--weights={weights} is a directory; {fix}")
    if not os.path.isfile(weights):
        raise ModelConfigError(f"weights file {weights!r} does not exist; {fix}")
    if not h5py.is_hdf5(weights):
        raise ModelConfigError(f"--weights={weights} is not a Keras weights file (not HDF5); {fix}")
    return weights


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


def check_options(backbone, weights, trainable, reinit_from=None):
    """Raises `ModelConfigError` for options `build_model` would refuse."""
    constructor = _backbone_constructor(backbone)
    _resolve_weights(weights)
    _check_trainable(trainable)
    if trainable.startswith("from:") or reinit_from:
        # Block names do not depend on the input size or the weights.
        probe = constructor(include_top=False, weights=None, input_shape=(128, 128, 3))
        if trainable.startswith("from:"):
            block_start(probe, trainable[5:], "--trainable")
        if reinit_from:
            block_start(probe, reinit_from, "--reinit_from")


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


def build_backbone(name, input_shape, weights="imagenet"):
    """A `keras.applications` model without its top, by name."""
    constructor = _backbone_constructor(name)
    resolved = _resolve_weights(weights)
    try:
        return constructor(include_top=False, weights=resolved, input_shape=input_shape)
    except ValueError as error:
        if resolved in (None, "imagenet"):
            raise
        raise ModelConfigError(
            f"--weights={weights} does not fit {name} without its top ({error}); pass the "
            f"weights of this backbone (e.g. {name}(include_top=False).save_weights(...))"
        ) from None


def build_model(
    backbone,
    num_classes,
    sample_rate,
    num_samples,
    *,
    weights="imagenet",
    trainable="all",
    reinit_from=None,
    dropout=0.0,
    mean=None,
    variance=None,
    dtype_policy="float32",
):
    """Builds the classifier from raw waveforms to class logits.

    Args:
        backbone: a `keras.applications` constructor name, e.g. "DenseNet201".
        num_classes: size of the output layer.
        sample_rate: sample rate of the input waveforms, in Hz.
        num_samples: samples per clip; the input is float32 `[batch, num_samples]`
            in [-1, 1].
        weights: "imagenet", "none" (random initialisation) or the path of a
            weights file for the backbone (e.g. Keras's `*_notop.h5` download,
            or `backbone.save_weights(...)` output).
        trainable: "all" fine-tunes everything; "head" freezes the backbone;
            "from:<block>" freezes the backbone's layers before that block.
        reinit_from: a backbone block name: re-initialise every layer from it on
            (after loading `weights`), keeping the weights before it.
        dropout: dropout rate before the output layer.
        mean, variance: per-channel statistics of the training data's
            spectrogram images (`recipe.image_statistics`); zeros and ones
            when omitted (set them before training).
        dtype_policy: the Keras dtype policy of the backbone, pool and dropout,
            e.g. "mixed_bfloat16" (`devices.resolve`). The frontend, the
            normalisation and the predictions layer are float32 in any case, so
            the logits (and the softmax of the loss) are float32. The global
            policy is restored before returning.

    Returns:
        An uncompiled `keras.Model` with layers named "waveform", "logmel_*",
        "normalization", the backbone, "pool", "dropout" and "predictions".
    """
    _check_trainable(trainable)
    shape = frontend.image_shape(sample_rate, num_samples)
    if mean is None:
        mean, variance = np.zeros(shape[-1]), np.ones(shape[-1])
    norm_mean, norm_variance = normalization_weights(backbone, mean, variance)

    with devices.dtype_policy(dtype_policy):
        # Layers.
        base = build_backbone(backbone, shape, weights)
        set_trainable(base, trainable)
        if reinit_from:
            reinitialize_from(base, reinit_from)
        normalization = keras.layers.Normalization(
            axis=-1,
            mean=norm_mean.astype("float32"),
            variance=norm_variance.astype("float32"),
            name="normalization",
            dtype="float32",
        )
        pool = keras.layers.GlobalAveragePooling2D(name="pool")
        drop = keras.layers.Dropout(dropout, name="dropout")
        predictions = keras.layers.Dense(num_classes, name="predictions", dtype="float32")

        # Functional graph.
        waveform = keras.Input(shape=(num_samples,), name="waveform")
        image = frontend.log_mel_image(waveform, sample_rate, num_samples)
        features = base(normalization(image))
        logits = predictions(drop(pool(features)))
        return keras.Model(waveform, logits, name=f"{backbone}_audio")


def get_backbone(model):
    """The nested `keras.applications` model inside a model from `build_model`."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            return layer
    raise ValueError(f"model {model.name!r} has no nested backbone model")


def set_dtype_policy(model, policy):
    """Makes a model from `build_model` compute as `build_model(dtype_policy=policy)`
    builds it: the backbone, pool and dropout under `policy` (e.g. "mixed_bfloat16"),
    the frontend, normalisation and predictions in float32.

    Mixed policies keep float32 variables, so the weights are untouched: only the
    arithmetic of the calls traced from now on changes. Saved models are float32
    (`recipe.float32_copy`); this is how predict.py runs one in mixed precision.
    """
    backbone = get_backbone(model)
    for layer in [backbone, *backbone.layers, model.get_layer("pool"), model.get_layer("dropout")]:
        layer.dtype_policy = policy


def use_fast_kernels(model):
    """Speed only, the same probabilities (to float32 rounding): BatchNorm layers run
    TensorFlow's fused kernel (`fused_batch_norm.use_fused_kernels`) and, on a CPU, the
    frontend computes one clip at a time (`frontend.use_per_clip_kernels`), as a model
    fresh from `build_model` does. For a model loaded from a `.keras` file."""
    fused_batch_norm.use_fused_kernels(model)
    frontend.use_per_clip_kernels(model)

