"""TensorFlow's fused BatchNorm kernel for a model's `keras.layers.BatchNormalization`.

Keras 3 computes batch normalisation from separate moment, subtract, multiply and
add ops. TensorFlow's `FusedBatchNormV3` kernel does the same in one op (oneDNN on
CPUs, cuDNN on GPUs) with a fused gradient; on DenseNet201, which has ~200
BatchNorm layers on wide concatenations, that is most of a CPU training step's
elementwise work (see the train-step benchmark).

`use_fused_kernels(model)` swaps the kernel on the layer objects only: the layers
keep their class, variables and config, so a saved model is an ordinary Keras
model, and its outputs, gradients and moving statistics equal Keras's own
(the tests compare them).
"""

import keras
import tensorflow as tf

# FusedBatchNormV3 raises an epsilon below this to it (cuDNN's limit); layers with
# a smaller epsilon keep Keras's kernel so their results do not change.
_MIN_EPSILON = 1.001e-5


def _channel_axis(layer):
    """The layer's single normalised axis, or None when it normalises several."""
    axis = layer.axis
    if isinstance(axis, (list, tuple)):
        axis = axis[0] if len(axis) == 1 else None
    return axis


def _fusable(layer):
    return (not layer.renorm and _channel_axis(layer) in (-1, 3, 1)
            and layer.epsilon >= _MIN_EPSILON and not getattr(layer, "synchronized", False))


def _fused_call(layer):
    keras_call = layer.call

    def call(inputs, training=None, mask=None):
        if mask is not None or len(inputs.shape) != 4:
            return keras_call(inputs, training=training, mask=mask)
        axis = _channel_axis(layer)
        data_format = "NCHW" if axis == 1 else "NHWC"
        channels = inputs.shape[axis]
        x = inputs if inputs.dtype in (tf.float16, tf.bfloat16, tf.float32) else tf.cast(
            inputs, tf.float32)
        scale = layer.gamma if layer.scale else tf.ones([channels])
        offset = layer.beta if layer.center else tf.zeros([channels])
        if training and layer.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, scale, offset, epsilon=layer.epsilon, data_format=data_format,
                is_training=True)[:3]
            # The kernel returns the unbiased variance; Keras averages the biased one.
            count = tf.cast(tf.size(x) // channels, tf.float32)
            variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
            momentum = layer.momentum
            layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
            layer.moving_variance.assign(
                layer.moving_variance * momentum + variance * (1.0 - momentum))
        else:
            y = tf.compat.v1.nn.fused_batch_norm(
                x, scale, offset, mean=layer.moving_mean, variance=layer.moving_variance,
                epsilon=layer.epsilon, data_format=data_format, is_training=False)[0]
        return tf.cast(y, layer.compute_dtype)

    return call


def batch_norm_layers(layer):
    """Every BatchNormalization layer inside `layer`, nested models included."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return [layer]
    found = []
    for sublayer in getattr(layer, "layers", []):
        found.extend(batch_norm_layers(sublayer))
    return found


def use_fused_kernels(model):
    """Makes the model's BatchNorm layers run TensorFlow's fused kernel.

    Call before the model is first traced. Returns the number of layers switched.
    """
    if keras.backend.backend() != "tensorflow":
        return 0
    layers = [layer for layer in batch_norm_layers(model) if _fusable(layer)]
    for layer in layers:
        if not getattr(layer, "_fused_kernel", False):
            layer.call = _fused_call(layer)
            layer._fused_kernel = True
    return len(layers)
