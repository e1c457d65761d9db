"""Gradient saliency and Grad-CAM on waveform models, built and reloaded."""

import os

import keras
import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf

from keras_audio_cnn import frontend, saliency
from keras_audio_cnn import model as model_lib

RATE, SAMPLES = 8000, 8000  # 1 s clips
FRAMES = frontend.image_shape(RATE, SAMPLES)[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Plausible log-mel statistics, so untrained backbones see inputs of sane scale.
MEAN, VARIANCE = np.full(3, -20.0), np.full(3, 400.0)


def half_tone_clips(frequencies, seed=0):
    """A tone in the first half of each clip, silence in the second half."""
    rng = np.random.default_rng(seed)
    t = np.arange(SAMPLES // 2) / RATE
    phase = rng.uniform(0, 2 * np.pi, (len(frequencies), 1))
    clips = np.zeros((len(frequencies), SAMPLES), "float32")
    clips[:, : SAMPLES // 2] = 0.5 * np.sin(2 * np.pi * np.asarray(frequencies)[:, None] * t + phase)
    return clips


def waveform_model(backbone, num_classes, mean, variance):
    """`build_model`'s graph around a small nested backbone of our choosing."""
    waveform = keras.Input(shape=(SAMPLES,), name="waveform")
    x = frontend.log_mel_image(waveform, RATE, SAMPLES)
    x = keras.layers.Normalization(mean=mean, variance=variance, name="normalization")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(backbone(x))
    x = keras.layers.Dropout(0.0, name="dropout")(x)
    return keras.Model(waveform, keras.layers.Dense(num_classes, name="predictions")(x))


@pytest.fixture(scope="module")
def gated():
    """A model that only sees pixels louder than -50 dB.

    The backbone's first layer averages the three channels of each pixel and
    zeroes it (ReLU) unless it is above the normalisation mean, -50 dB, so
    silence (-60 dB) can change neither the logits nor the last conv block.
    """
    keras.utils.set_random_seed(0)
    image = keras.Input(frontend.image_shape(RATE, SAMPLES))
    x = keras.layers.Conv2D(
        1, 1, activation="relu", kernel_initializer=keras.initializers.Constant(1 / 3), name="gate"
    )(image)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    backbone = keras.Model(image, x, name="gated_backbone")
    return waveform_model(backbone, 3, np.full(3, -50.0), np.full(3, 400.0))


@pytest.fixture(scope="module")
def mobilenet():
    keras.utils.set_random_seed(0)
    return model_lib.build_model(
        "MobileNetV3Small", 3, RATE, SAMPLES, weights="none", mean=MEAN, variance=VARIANCE
    )


def check_maps(maps, model, waveforms):
    batch, classes = len(waveforms), model.output_shape[-1]
    assert maps["images"].shape == (batch, 128, FRAMES, 3)
    assert maps["input_gradient"].shape == (batch, 128, FRAMES, 3)
    assert maps["grad_cam"].shape == (batch, 128, FRAMES)
    assert maps["probabilities"].shape == (batch, classes)
    assert maps["predicted"].shape == (batch,)
    # The head re-applies the model's own layers: same logits, same image.
    logits = np.asarray(model(waveforms, training=False))
    np.testing.assert_allclose(maps["logits"], logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(maps["predicted"], logits.argmax(axis=1))
    np.testing.assert_allclose(maps["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
    image = keras.Model(model.inputs[0], model.get_layer("logmel_image").output)
    np.testing.assert_allclose(maps["images"], np.asarray(image(waveforms)), atol=1e-4)
    gradient = maps["input_gradient"]
    assert np.isfinite(gradient).all() and (gradient >= 0).all()
    assert (gradient.reshape(batch, -1).max(axis=1) > 0).all()
    cam = maps["grad_cam"]
    assert np.isfinite(cam).all() and cam.min() >= 0.0 and cam.max() <= 1.0
    # Normalised per example: each map peaks at 1 unless it is empty.
    peaks = cam.reshape(batch, -1).max(axis=1)
    assert np.all((np.abs(peaks - 1.0) < 1e-5) | (peaks == 0.0))


def test_mobilenet_maps_have_image_shapes_and_sane_values(mobilenet):
    waveforms = half_tone_clips([300.0, 700.0, 1500.0])
    check_maps(saliency.saliency_maps(mobilenet, waveforms, batch_size=2), mobilenet, waveforms)


def test_densenet_backbone_splits_at_its_last_conv_block():
    keras.utils.set_random_seed(0)
    model = model_lib.build_model(
        "DenseNet121", 4, RATE, SAMPLES, weights="none", mean=MEAN, variance=VARIANCE
    )
    _, head = saliency.split_model(model)
    # DenseNet's last 4-D layer is its output: the final block's ReLU.
    assert head.output_shape[0] == model_lib.get_backbone(model).output_shape
    assert head.output_shape[0][1] == 128 // 32  # stride 32
    waveforms = half_tone_clips([500.0, 2000.0])
    check_maps(saliency.saliency_maps(model, waveforms), model, waveforms)


def test_works_on_a_model_reloaded_from_a_keras_file(mobilenet, tmp_path):
    path = str(tmp_path / "model.keras")
    mobilenet.save(path)
    reloaded = tf.keras.models.load_model(path)
    waveforms = half_tone_clips([400.0, 900.0])
    original, loaded = (saliency.saliency_maps(m, waveforms) for m in (mobilenet, reloaded))
    check_maps(loaded, reloaded, waveforms)
    for key in ("logits", "input_gradient", "grad_cam"):
        np.testing.assert_allclose(loaded[key], original[key], rtol=1e-4, atol=1e-6)


def test_input_gradient_is_the_derivative_of_the_predicted_logit():
    # Linear after the image, so d logit_c / d pixel (h, w, ch) is the same for
    # every pixel: sum_k W[k, c] K[ch, k] / (sqrt(variance[ch]) * pixels).
    keras.utils.set_random_seed(0)
    image = keras.Input(frontend.image_shape(RATE, SAMPLES))
    conv = keras.layers.Conv2D(4, 1, use_bias=False, name="linear_conv")
    backbone = keras.Model(image, conv(image), name="linear_backbone")
    variance = np.array([100.0, 400.0, 900.0])
    model = waveform_model(backbone, 5, np.full(3, -30.0), variance)
    maps = saliency.saliency_maps(model, half_tone_clips([300.0, 800.0, 2000.0]))
    kernel = conv.get_weights()[0][0, 0]  # [channels, 4]
    dense = model.get_layer("predictions").get_weights()[0]  # [4, classes]
    expected = (kernel @ dense).T / np.sqrt(variance) / (128 * FRAMES)  # [classes, channels]
    for gradient, predicted in zip(maps["input_gradient"], maps["predicted"]):
        np.testing.assert_allclose(
            gradient, np.broadcast_to(np.abs(expected[predicted]), gradient.shape), rtol=1e-3
        )


def test_saliency_and_grad_cam_stay_on_the_tone_when_silence_cannot_matter(gated):
    maps = saliency.saliency_maps(gated, half_tone_clips([440.0, 1000.0, 2500.0]))
    check_maps(maps, gated, half_tone_clips([440.0, 1000.0, 2500.0]))
    # The tone stops at 0.5 s; the 100 ms window smears it to 0.55 s.
    tone, silence = slice(0, FRAMES // 2), slice(int(0.6 * FRAMES), FRAMES)
    gradient, cam = maps["input_gradient"], maps["grad_cam"]
    assert (maps["images"][:, :, silence] < -59.0).all()
    assert (gradient[:, :, silence] == 0.0).all()
    assert (gradient[:, :, tone].reshape(3, -1).max(axis=1) > 0).all()
    assert (cam[:, :, silence] < 1e-6).all()
    assert (cam[:, :, tone].reshape(3, -1).max(axis=1) > 0.5).all()


def png_size(path):
    with open(path, "rb") as f:
        header = f.read(24)
    assert header[:8] == PNG_SIGNATURE
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def test_figures_are_pngs_one_per_clip(gated, tmp_path):
    paths = saliency.write_saliency_figures(
        gated, half_tone_clips([440.0, 1000.0]), [0, None], ["440 Hz", "1 kHz", "2.5 kHz"],
        str(tmp_path / "maps"), prefix="fold1_",
    )
    assert [os.path.basename(p) for p in paths] == ["fold1_saliency_000.png", "fold1_saliency_001.png"]
    for path in paths:
        width, height = png_size(path)
        pixels = matplotlib.image.imread(path)
        assert pixels.shape[:2] == (height, width)
        assert width >= 1000 and height >= 600  # three columns, three rows, legible
        assert pixels[..., :3].std() > 0.1  # not a blank canvas


def test_rejects_labels_that_do_not_match_the_clips(mobilenet, tmp_path):
    with pytest.raises(ValueError, match="labels"):
        saliency.write_saliency_figures(
            mobilenet, half_tone_clips([400.0]), [0, 1], ["a", "b", "c"], str(tmp_path)
        )
