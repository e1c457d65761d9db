"""The paper's family: the 3-channel log-mel image in front of a `keras.applications` CNN.

Palanisamy, Singhania and Yao (2020): the multi-resolution log-mel image of
`frontend` (any sample rate), standardised with the training data's own statistics
and mapped onto the input statistics the backbone's ImageNet weights expect, then
any `keras.applications` model without its top, global average pooling, dropout and
the output layer.
"""

import os

import h5py
import keras
import numpy as np

from keras_audio_cnn import backbones, devices, frontend, image_transforms
from keras_audio_cnn.errors import ModelConfigError

# Mean and standard deviation of ImageNet RGB pixels (0-255), the input statistics
# ImageNet-trained weights were fitted to.
_IMAGENET_PIXEL_MEAN = np.array([123.675, 116.28, 103.53])
_IMAGENET_PIXEL_STD = np.array([58.395, 57.12, 57.375])
# The frontend's image is standardised with the training data's statistics.
NEEDS_IMAGE_STATISTICS = True


def backbone_names():
    """Names of every `keras.applications` model constructor."""
    return sorted(n for n in dir(keras.applications) if n[:1].isupper())


def _constructor(name):
    if name not in backbone_names():
        raise backbones.unknown(name, backbone_names())
    return getattr(keras.applications, name)


def sample_rate(name):
    """The rate a backbone takes: any (None); the frontend adapts to the data's."""
    del name
    return None


def backbone_input_statistics(name):
    """Per-channel (mean, std) of the inputs the backbone's weights expect.

    Each `keras.applications` family expects its own input scaling ("torch":
    about N(0, 1); "caffe": mean-subtracted 0-255; "tf": [-1, 1]; EfficientNet and
    ConvNeXt: raw 0-255 with preprocessing inside the model). Passing ImageNet
    pixel statistics through the family's `preprocess_input` gives the statistics
    to map standardised spectrograms onto, whatever the family.
    """
    constructor = _constructor(name)
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


def resolve_weights(weights):
    """"imagenet", None (random) or the path of a Keras weights file, checked."""
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


def check_weights(name, weights):
    """Raises `ModelConfigError` for a backbone or weights `build_model` would refuse."""
    _constructor(name)
    resolve_weights(weights)


def probe(name):
    """A small random-weight backbone, to read its block and layer names from (they do
    not depend on the input size or the weights)."""
    return _constructor(name)(include_top=False, weights=None, input_shape=(128, 128, 3))


def build_backbone(name, input_shape, weights="imagenet"):
    """A `keras.applications` model without its top, by name."""
    constructor = _constructor(name)
    resolved = resolve_weights(weights)
    try:
        return constructor(include_top=False, weights=resolved, input_shape=input_shape)
    except ValueError as error:
        if resolved in (None, "imagenet"):
            raise
        raise ModelConfigError(
            f"--weights={weights} does not fit {name} without its top ({error}); pass the "
            f"weights of this backbone (e.g. {name}(include_top=False).save_weights(...))"
        ) from None


def build_model(name, num_classes, sample_rate, num_samples, *, weights="imagenet",
                dropout=0.0, mean=None, variance=None, dtype_policy="float32"):
    """The paper's classifier from raw waveforms to class logits (see `model.build_model`).

    Layers: "waveform", "logmel_*" (the frontend), "normalization", the backbone,
    "pool", "dropout" and "predictions".
    """
    shape = frontend.image_shape(sample_rate, num_samples)
    if mean is None:
        mean, variance = np.zeros(shape[-1]), np.ones(shape[-1])
    norm_mean, norm_variance = normalization_weights(name, mean, variance)

    with devices.dtype_policy(dtype_policy):
        # Layers.
        base = build_backbone(name, shape, weights)
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
        return keras.Model(waveform, logits, name=f"{name}_audio")


def augment_settings(name, sample_rate):
    """What `augment.Augment` needs of the image: the mel bands' centre frequencies (HTK,
    `frontend`'s), the value of silence, SpecAugment's defaults."""
    del name
    return dict(band_hz=None, floor_db=image_transforms.FLOOR_DB,
                time_masks=image_transforms.TIME_MASKS, time_width=image_transforms.TIME_WIDTH,
                freq_masks=image_transforms.FREQ_MASKS, freq_width=image_transforms.FREQ_WIDTH,
                fill="floor", sample_rate=sample_rate)


def channel_names(name):
    """What each image channel is, for figures."""
    del name
    return [f"{ms} ms window" for ms in frontend.WINDOWS_MS]


def portable_model(model, backbone, name=None, dft=True):
    """The model with the FFT-free frontend that LiteRT and ONNX run
    (`portable_frontend`: its DFT is always matrix products)."""
    del backbone, dft
    from keras_audio_cnn import portable_frontend

    return portable_frontend.portable_model(model, name=name)
