"""The fused BatchNorm kernel computes exactly what Keras's BatchNormalization does."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_audio_cnn import fused_batch_norm


def twin_layers(momentum=0.9, epsilon=1.001e-5):
    keras_layer = keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon)
    fused_layer = keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon)
    for layer in (keras_layer, fused_layer):
        layer.build((None, 5, 7, 3))
    rng = np.random.default_rng(0)
    fused_layer.set_weights([w + rng.uniform(0.1, 0.5, w.shape) for w in keras_layer.get_weights()])
    keras_layer.set_weights(fused_layer.get_weights())
    assert fused_batch_norm.use_fused_kernels(fused_layer) == 1
    return keras_layer, fused_layer


@pytest.mark.parametrize("training", [True, False])
def test_outputs_gradients_and_moving_statistics_equal_keras(training):
    keras_layer, fused_layer = twin_layers()
    x = tf.constant(np.random.default_rng(1).normal(2.0, 3.0, (4, 5, 7, 3)).astype("float32"))
    initial = keras_layer.moving_mean.numpy().copy()
    results = []
    for layer in (keras_layer, fused_layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(y * tf.range(3, dtype=tf.float32))
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        results.append((y, grads, [w.numpy() for w in layer.weights]))
    (y1, g1, w1), (y2, g2, w2) = results
    np.testing.assert_allclose(y2, y1, atol=1e-5)
    for a, b in zip(g2, g1):
        np.testing.assert_allclose(a, b, atol=1e-4)
    for a, b in zip(w2, w1):  # moving mean and (biased) variance updated alike
        np.testing.assert_allclose(a, b, rtol=1e-5)
    assert np.allclose(fused_layer.moving_mean.numpy(), initial) != training


def test_the_traced_graph_uses_the_fused_kernel():
    _, fused_layer = twin_layers()
    x = tf.zeros((2, 5, 7, 3))
    for training in (True, False):
        graph = tf.function(lambda x: fused_layer(x, training=training)).get_concrete_function(x).graph
        ops = {op.type for op in graph.get_operations()}
        assert "FusedBatchNormV3" in ops, (training, sorted(ops))


def test_layers_with_a_tiny_epsilon_keep_the_keras_kernel_and_models_save_unchanged(tmp_path):
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(epsilon=1.001e-5, name="bn_fused")(x)
    x = keras.layers.BatchNormalization(epsilon=1e-6, name="bn_tiny_epsilon")(x)
    model = keras.Model(inputs, x)
    assert fused_batch_norm.use_fused_kernels(model) == 1
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 2)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-5)
