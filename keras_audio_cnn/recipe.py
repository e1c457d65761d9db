"""The training recipe: the compiled model, its weight decay, schedule and statistics.

Palanisamy et al. (2020) and their reference code: Adam with PyTorch's coupled L2
weight decay, the learning rate stepped down every `lr_decay_epochs`, inputs
standardised with the training data's own per-channel statistics. Two additions
of this project: the learning rate follows the number of replicas
(`scaled_learning_rate`), and BatchNorm statistics are re-estimated after training
("precise BN").
"""

import functools

import keras
import numpy as np
import tensorflow as tf

from keras_audio_cnn import frontend, fused_batch_norm
from keras_audio_cnn import model as model_lib
from keras_audio_cnn.errors import RunError


def image_statistics(sample_rate, num_samples, dataset):
    """Per-channel mean and variance of the paper's log-mel images of a dataset (the
    statistics an ImageNet backbone's normalisation standardises with)."""
    image_model = frontend.build_frontend(sample_rate, num_samples)

    @tf.function
    def moments(waveform):
        image = tf.cast(image_model(waveform, training=False), tf.float64)
        return (
            tf.cast(tf.reduce_prod(tf.shape(image)[:-1]), tf.float64),
            tf.reduce_sum(image, axis=[0, 1, 2]),
            tf.reduce_sum(tf.square(image), axis=[0, 1, 2]),
        )

    count, total, total_sq = 0.0, 0.0, 0.0
    for waveform, _ in dataset:
        n, s, sq = moments(waveform)
        count, total, total_sq = count + n.numpy(), total + s.numpy(), total_sq + sq.numpy()
    mean = total / count
    return mean, np.maximum(total_sq / count - mean**2, 1e-12)


def precise_batch_norm(model, dataset):
    """Re-estimates BatchNorm statistics as the average over a pass of `dataset`.

    Weights stay fixed; each batch runs in training mode, and every trainable
    BatchNormalization layer's moving mean and variance become the
    batch-size-weighted average of that pass's batch statistics ("precise BN").
    Moving averages with momentum 0.99-0.999 lag far behind fast-changing
    weights, which can leave a freshly trained model at chance accuracy.

    Returns the number of layers updated.
    """
    layers = [layer for layer in fused_batch_norm.batch_norm_layers(model) if layer.trainable]
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    spec = dataset.element_spec[0]  # one trace for every batch size, the last one's too
    forward = tf.function(lambda x: model(x, training=True),
                          input_signature=[tf.TensorSpec([None, *spec.shape[1:]], spec.dtype)])
    sums = [[np.zeros(layer.moving_mean.shape), np.zeros(layer.moving_variance.shape)]
            for layer in layers]
    seen = 0
    try:
        for layer in layers:
            layer.momentum = 0.0  # the moving statistics become the batch's own
        for waveform, _ in dataset:
            forward(waveform)
            size = int(waveform.shape[0])
            seen += size
            for (mean_sum, var_sum), layer in zip(sums, layers):
                mean_sum += size * keras.ops.convert_to_numpy(layer.moving_mean)
                var_sum += size * keras.ops.convert_to_numpy(layer.moving_variance)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    if not seen:
        raise RunError("precise BN got an empty dataset")
    for (mean_sum, var_sum), layer in zip(sums, layers):
        layer.moving_mean.assign(mean_sum / seen)
        layer.moving_variance.assign(var_sum / seen)
    return len(layers)


def add_weight_decay(model, weight_decay):
    """PyTorch-style coupled weight decay, as the reference `Adam(weight_decay=)`.

    Adds `weight_decay / 2 * ||w||^2` to the loss for every trainable variable, so
    the gradient gains `weight_decay * w` before Adam's scaling. (Keras's own
    `weight_decay` argument is decoupled, AdamW-style, a different recipe.) The
    regularisers live on the variables only, not in the saved layer configs.
    """
    if weight_decay <= 0:
        return
    for variable in model.trainable_variables:
        variable.regularizer = keras.regularizers.L2(weight_decay / 2)


def scaled_learning_rate(learning_rate, lr_scaling, replicas):
    """The initial learning rate for `replicas` devices, each with `batch_size` clips.

    `linear` (Goyal et al. 2017, "Accurate, Large Minibatch SGD"): the global
    batch grows `replicas` times, so does the learning rate. `sqrt` grows it by
    the square root, the rule Malladi et al. (2022, "On the SDEs and Scaling
    Rules for Adaptive Gradient Algorithms") derive for Adam. `none` keeps
    `learning_rate`. On one device all three give `learning_rate`.
    """
    factor = {"linear": replicas, "sqrt": replicas**0.5, "none": 1}[lr_scaling]
    return learning_rate * factor


def step_decay(initial, decay_epochs, decay_factor):
    """`LearningRateScheduler`'s schedule: `initial * decay_factor ** (epoch // decay_epochs)`."""

    def schedule(epoch, learning_rate):
        del learning_rate
        return initial * decay_factor ** (epoch // decay_epochs)

    return schedule


def compile_training_model(model_options, plan, settings, *, num_classes, sample_rate,
                           num_samples, learning_rate, weight_decay, seed, mean=None,
                           variance=None, strategy=None, amsgrad=False):
    """The model train.py trains, compiled with the recipe and the device settings.

    Args:
        model_options: a `config.ModelConfig` (backbone, weights, trainable, ...).
        plan: the run's `augment.AugmentPlan`: the training model's extra input and
            layer, and the loss.
        settings: a `devices.Settings` (dtype policy, XLA).
        learning_rate: Adam's initial learning rate (already scaled for the replicas).
        amsgrad: Adam's AMSGrad variant (PANNs' recipe).
        weight_decay: coupled L2 weight decay (`add_weight_decay`).
        mean, variance: the training data's `image_statistics`.
        strategy: the `tf.distribute` strategy whose scope holds the variables.

    Returns:
        `(model, fitted, build)`: the waveform-to-logits model that is saved, the
        model `fit` trains (it shares `model`'s layers; `plan.training_model`), and
        `build(**overrides)`, which builds the same architecture again (the trainer
        uses it for the float32 copy of a mixed-precision model). BatchNorm layers
        run TensorFlow's fused kernel (`fused_batch_norm`), which changes the speed,
        not the results.
    """
    build = functools.partial(
        model_lib.build_model,
        model_options.backbone,
        num_classes,
        sample_rate,
        num_samples,
        trainable=model_options.trainable,
        dropout=model_options.dropout,
        mean=mean,
        variance=variance,
    )
    with (strategy or tf.distribute.get_strategy()).scope():
        model = build(weights=model_options.weights, reinit_from=model_options.reinit_from,
                      dtype_policy=settings.dtype_policy)
        fused_batch_norm.use_fused_kernels(model)
        add_weight_decay(model, weight_decay)
        fitted = plan.training_model(model, sample_rate, seed)
        # Under mixed_float16, compile() wraps the optimizer in a LossScaleOptimizer.
        fitted.compile(
            optimizer=keras.optimizers.Adam(learning_rate, amsgrad=amsgrad), loss=plan.loss(),
            metrics=["accuracy"], jit_compile=settings.jit_compile,
        )
    return model, fitted, build


def float32_copy(model, build, strategy):
    """The trained `model` in a float32 build of the same architecture (same weights).

    Under a mixed dtype policy the variables are float32 already, so the float32
    build takes them unchanged; saved models are float32 graphs whatever the
    training precision.
    """
    with strategy.scope():
        copy = build(weights="none")
    copy.set_weights(model.get_weights())
    fused_batch_norm.use_fused_kernels(copy)
    return copy


