"""Where in the log-mel image a classifier looks: gradient saliency and Grad-CAM.

Palanisamy, Singhania and Yao (2020) show which parts of the spectrogram drive
a prediction by back-propagating the predicted class's score to the input image.
This module computes, for models from `model.build_model` (also after a
`.keras` save and `tf.keras.models.load_model`):

- the input-gradient saliency `|d logit_pred / d image|` (Simonyan et al., 2014)
  with respect to the 3-channel log-mel image, the output of layer
  "logmel_image", so each window length (25, 50, 100 ms) gets its own map;
- Grad-CAM (Selvaraju et al., 2017) of the predicted class over the backbone's
  last convolutional block, upsampled to the image.

Gradients with respect to intermediate tensors come from two sub-models built
from the model's own layers: the frontend (waveform to image) and a head (image
to last-conv activations and logits) that re-applies the layers after
"logmel_image" with the nested backbone split at its last 4-D layer.
"""

import os

import keras
import matplotlib
import numpy as np
import tensorflow as tf
from matplotlib import cm, colors
from matplotlib.figure import Figure

from keras_audio_cnn import frontend, report
from keras_audio_cnn import model as model_lib

IMAGE_LAYER = "logmel_image"


def _last_conv_layer(backbone):
    for layer in reversed(backbone.layers):
        if len(layer.output.shape) == 4:
            return layer
    raise ValueError(f"backbone {backbone.name!r} has no layer with a 4-D output")


def split_model(model):
    """The frontend and head sub-models that expose the tensors saliency needs.

    Args:
        model: a model from `model.build_model`, or one reloaded from `.keras`.

    Returns:
        `(image_model, head)`: `image_model` maps waveforms `[B, samples]` to the
        log-mel image `[B, 128, T, 3]`; `head` maps that image to
        `(last_conv, logits)`, the activations of the backbone's last layer with
        a 4-D output and the model's logits.
    """
    if len(model.inputs) != 1:
        raise ValueError(
            f"model {model.name!r} has {len(model.inputs)} inputs; pass the inference model "
            "(waveforms in, logits out), e.g. a saved model.keras"
        )
    image_layer = model.get_layer(IMAGE_LAYER)
    image_model = keras.Model(model.inputs[0], image_layer.output, name="saliency_frontend")

    backbone = model_lib.get_backbone(model)
    conv_layer = _last_conv_layer(backbone)
    split_backbone = keras.Model(
        backbone.inputs[0], [conv_layer.output, backbone.outputs[0]], name="split_backbone"
    )

    # In build_model's inference model the layers after the image form a chain:
    # normalization -> backbone -> pool -> dropout -> predictions. The tests
    # check that the head's logits equal the model's.
    layers = model.layers[model.layers.index(image_layer) + 1:]
    image = keras.Input(shape=image_layer.output.shape[1:], name="image")
    x, conv = image, None
    for layer in layers:
        if layer is backbone:
            conv, x = split_backbone(x)
        else:
            x = layer(x)
    if conv is None:
        raise ValueError(f"model {model.name!r} does not apply its backbone after {IMAGE_LAYER!r}")
    head = keras.Model(image, [conv, x], name="saliency_head")
    return image_model, head


def _explain(image_model, head, waveforms):
    images = tf.convert_to_tensor(image_model(waveforms, training=False))
    with tf.GradientTape() as tape:
        tape.watch(images)
        conv, logits = head(images, training=False)
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        # Each clip's logit depends only on its own image (inference mode), so
        # the gradient of their sum gives every clip its own gradient.
        chosen = tf.reduce_sum(tf.gather(logits, predicted, axis=1, batch_dims=1))
    image_grad, conv_grad = tape.gradient(chosen, [images, conv])

    # Grad-CAM: channel weights are the spatially averaged gradients.
    weights = tf.reduce_mean(conv_grad, axis=[1, 2])
    cam = tf.nn.relu(tf.einsum("bhwk,bk->bhw", conv, weights))
    cam = tf.image.resize(cam[..., None], tf.shape(images)[1:3], method="bilinear")[..., 0]
    peak = tf.reduce_max(cam, axis=[1, 2], keepdims=True)
    cam = tf.math.divide_no_nan(cam, peak)
    return {
        "images": images.numpy(),
        "predicted": predicted.numpy(),
        "logits": logits.numpy(),
        "probabilities": tf.nn.softmax(logits).numpy(),
        "input_gradient": tf.abs(image_grad).numpy(),
        "grad_cam": np.clip(cam.numpy(), 0.0, 1.0),
    }


def saliency_maps(model, waveforms, batch_size=8):
    """Input-gradient saliency and Grad-CAM of each clip's predicted class.

    Args:
        model: a waveform classifier from `model.build_model` (or reloaded from a
            `.keras` file) whose outputs are logits.
        waveforms: float32 array `[B, samples]` in [-1, 1].
        batch_size: clips per gradient computation (bounds memory).

    Returns:
        A dict of numpy arrays:
        `images` `[B, 128, T, 3]`: the log-mel image (layer "logmel_image");
        `predicted` `[B]`: the predicted class ids;
        `logits`, `probabilities` `[B, C]`: the model's logits and their softmax;
        `input_gradient` `[B, 128, T, 3]`: `|d logit_pred / d image|`;
        `grad_cam` `[B, 128, T]`: Grad-CAM of the predicted class over the
        backbone's last 4-D layer, ReLU, bilinearly upsampled to the image and
        divided by its maximum, so in [0, 1] (all zero if nothing is positive).

    Example:
        model = tf.keras.models.load_model("runs/esc50_DenseNet201/fold1/model.keras")
        maps = saliency_maps(model, clips[:4])
    """
    waveforms = np.asarray(waveforms, dtype="float32")
    if waveforms.ndim != 2:
        raise ValueError(f"waveforms must be [batch, samples], got shape {waveforms.shape}")
    image_model, head = split_model(model)
    parts = [
        _explain(image_model, head, tf.constant(waveforms[start:start + batch_size]))
        for start in range(0, len(waveforms), batch_size)
    ]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _show(axes, pixels, **kwargs):
    # Sharp pixels for short clips; long clips (30 s: 1500 frames) are shrunk
    # to the panel's width, which needs antialiasing.
    interpolation = "nearest" if pixels.shape[1] <= 400 else "antialiased"
    return axes.imshow(pixels, origin="lower", aspect="auto", interpolation=interpolation, **kwargs)


def _overlay(axes, background, vmin, vmax, heat, cmap):
    """Grey image with a heat map whose opacity grows with its value."""
    _show(axes, background, cmap="gray", vmin=vmin, vmax=vmax)
    rgba = cmap(heat)
    rgba[..., 3] = 0.9 * heat
    _show(axes, rgba)


def _saliency_figure(image, gradient, cam, title, title_color, channel_names=None):
    """One clip: a row per channel (window length); image, +saliency, +Grad-CAM."""
    rows = image.shape[-1]
    # One scale per clip, so the rows show which window length mattered most;
    # the 99.5th percentile keeps a few extreme pixels from washing out the rest.
    top = np.percentile(gradient, 99.5)
    gradient = np.clip(gradient / top, 0.0, 1.0) if top > 0 else np.zeros_like(gradient)
    vmin, vmax = np.percentile(image, 0.5), np.percentile(image, 99.9)
    heat_cmap = colors.LinearSegmentedColormap.from_list(
        "heat", ["#c00000", "#ff3000", "#ffe000"])
    cam_cmap = matplotlib.colormaps["turbo"]

    # A fixed grid (no layout engine) keeps drawing fast: a row per channel,
    # colour bars in the bottom margin under each column.
    height = 2.3 * rows + 1.9
    figure = Figure(figsize=(14, height))
    grid = figure.add_gridspec(
        rows, 3, hspace=0.12, wspace=0.06,
        left=0.07, right=0.99, top=1 - 0.55 / height, bottom=1.3 / height,
    )
    axes = np.array([[figure.add_subplot(grid[row, column]) for column in range(3)]
                     for row in range(rows)])
    for row in range(rows):
        names = channel_names or [f"{ms} ms window" for ms in frontend.WINDOWS_MS]
        window = names[row] if row < len(names) else f"channel {row}"
        spectrogram = image[..., row]
        shown = _show(axes[row, 0], spectrogram, cmap="magma", vmin=vmin, vmax=vmax)
        _overlay(axes[row, 1], spectrogram, vmin, vmax, gradient[..., row], heat_cmap)
        _overlay(axes[row, 2], spectrogram, vmin, vmax, cam, cam_cmap)
        axes[row, 0].set_ylabel(f"{window}\nmel band")
        for column in range(3):
            if column:
                axes[row, column].tick_params(labelleft=False)
            if row < rows - 1:
                axes[row, column].tick_params(labelbottom=False)
    for column, name in enumerate(
        ["log-mel image", "+ input-gradient saliency", "+ Grad-CAM (last conv block)"]
    ):
        axes[0, column].set_title(name)
        axes[-1, column].set_xlabel("time frame")
    bars = [
        (shown, "log-mel power (dB)"),
        (cm.ScalarMappable(colors.Normalize(0, 1), heat_cmap),
         "|gradient| / 99.5th percentile of the clip (opacity grows with it)"),
        (cm.ScalarMappable(colors.Normalize(0, 1), cam_cmap), "Grad-CAM, max = 1 (opacity grows with it)"),
    ]
    for column, (mappable, label) in enumerate(bars):
        box = axes[-1, column].get_position()
        cax = figure.add_axes([box.x0 + 0.1 * box.width, 0.5 / height, 0.8 * box.width, 0.14 / height])
        bar = figure.colorbar(mappable, cax=cax, orientation="horizontal")
        bar.set_label(label, labelpad=1)
    figure.suptitle(title, color=title_color, fontsize="x-large", y=0.995)
    return figure


def write_saliency_figures(model, waveforms, labels, class_names, out_dir, prefix="",
                           channel_names=None):
    """Writes one PNG per clip showing where the model looked.

    Each figure has a row per image channel (the paper's window lengths: 25, 50,
    100 ms) and three columns: the log-mel image, the image with the input-gradient
    saliency of the predicted class on top, and the image with its Grad-CAM on top.
    The title gives the true and predicted class and the predicted probability
    (green when right, red when wrong).

    Args:
        model: as for `saliency_maps`.
        waveforms: float32 array `[B, samples]`.
        labels: `B` true class ids (`None` or -1 when unknown).
        class_names: names indexed by class id.
        out_dir: directory for the PNGs, created if missing.
        prefix: prepended to each file name, e.g. "fold1_".
        channel_names: what each image channel is (`model.channel_names`); default:
            the paper's three window lengths.

    Returns:
        The PNG paths, `{out_dir}/{prefix}saliency_{i:03d}.png`, in clip order.
    """
    if len(labels) != len(waveforms):
        raise ValueError(f"{len(labels)} labels for {len(waveforms)} waveforms")
    maps = saliency_maps(model, waveforms)
    tf.io.gfile.makedirs(out_dir)
    paths = []
    for i, label in enumerate(labels):
        predicted = int(maps["predicted"][i])
        probability = float(maps["probabilities"][i, predicted])
        known = label is not None and int(label) >= 0
        true_name = class_names[int(label)] if known else "unknown"
        title = (f"true: {true_name}    predicted: {class_names[predicted]} "
                 f"(p = {probability:.2f})")
        color = "black" if not known else ("darkgreen" if int(label) == predicted else "firebrick")
        figure = _saliency_figure(
            maps["images"][i], maps["input_gradient"][i], maps["grad_cam"][i], title, color,
            channel_names)
        path = os.path.join(out_dir, f"{prefix}saliency_{i:03d}.png")
        report.save_png(figure, path, dpi=80)
        paths.append(path)
    return paths
