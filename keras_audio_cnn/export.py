"""Serving forms of a trained waveform-to-logits model."""

import keras
import tensorflow as tf

from keras_audio_cnn import fused_batch_norm


def export_serving(model, path, num_samples, class_names):
    """Writes a SavedModel serving waveforms `[None, num_samples]` -> probabilities.

    Its `class_names()` endpoint returns the label names in output order.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",
        fn=lambda waveform: keras.ops.softmax(model(waveform, training=False)),
        input_signature=[tf.TensorSpec([None, num_samples], tf.float32, name="waveform")],
    )
    names = tf.constant(class_names)
    archive.add_endpoint(name="class_names", fn=lambda: names, input_signature=[])
    archive.write_out(path, verbose=False)


def inference_function(model, jit_compile=False):
    """A compiled function from waveforms `[batch, num_samples]` to class probabilities.

    BatchNorm layers run TensorFlow's fused inference kernel.
    """
    fused_batch_norm.use_fused_kernels(model)
    return tf.function(lambda waveform: keras.ops.softmax(model(waveform, training=False)),
                       jit_compile=jit_compile, reduce_retracing=True)
