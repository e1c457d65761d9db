"""How close a backbone's forward pass runs to what this CPU's cores can compute.

    python -m benchmarks.compute_floor --backbone=DenseNet201

Counts the backbone's multiply-accumulates at the frontend's ESC-50 image (its
convolutions, depthwise ones included, and dense layers, from the Keras model's
shapes), times a 2048 x 2048 matrix product in float32 and in bfloat16 (the best
case for the cores: what a convolution can at most reach), then the backbone's
forward pass alone at `--batch` images, and prints GMAC/s for each (medians of
`--trials`). The clip rate a target asks for, times the MACs a clip, over the
matrix product's rate, says whether the target can be reached in that precision.
"""

import os
import time

from absl import app, flags

flags.DEFINE_string("backbone", "DenseNet201", "A keras.applications constructor name.")
flags.DEFINE_integer("batch", 32, "Images per forward pass.")
flags.DEFINE_integer("trials", 7, "Timed repetitions of each.")
FLAGS = flags.FLAGS


def multiply_accumulates(model):
    """Multiply-accumulates of one input through `model`'s Conv2D, DepthwiseConv2D and
    Dense layers (nested models included); other layers are not counted."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += multiply_accumulates(layer)
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            height, width, channels = layer.output.shape[1:]
            total += height * width * channels * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, keras.layers.Conv2D):
            height, width, filters = layer.output.shape[1:]
            kh, kw, inputs_per_group, _ = layer.kernel.shape  # grouped: inputs / groups
            total += height * width * filters * kh * kw * inputs_per_group
        elif isinstance(layer, keras.layers.Dense):
            total += layer.kernel.shape[0] * layer.kernel.shape[1]
    return total


def _median_rate(work, amount, trials):
    """(median, min, max) of `amount / seconds` over `trials` calls of `work`, after one
    untimed call (tracing, allocation)."""
    from benchmarks import common

    work()
    rates = []
    for _ in range(trials):
        start = time.perf_counter()
        work()
        rates.append(amount / (time.perf_counter() - start))
    stats = common.summarize(rates)
    return stats["median"], stats["min"], stats["max"]


def main(argv):
    from benchmarks import sides

    sides._ours()  # the project's settings: oneDNN on, fused BatchNorm
    import keras
    import tensorflow as tf

    from benchmarks import clips
    from keras_audio_cnn import fused_batch_norm

    # The cores' floor: on a machine with a GPU too, the model and everything timed
    # stay on the CPU.
    with tf.device("/CPU:0"):
        model = getattr(keras.applications, FLAGS.backbone)(
            weights=None, input_shape=clips.IMAGE_SHAPE, classes=clips.NUM_CLASSES)
        macs = multiply_accumulates(model)
        print(f"{FLAGS.backbone} at {'x'.join(map(str, clips.IMAGE_SHAPE))}: "
              f"{macs / 1e9:.3f} GMAC per image; load average {os.getloadavg()[0]:.2f}")
        n = 2048
        product = tf.function(lambda a, b: tf.matmul(a, b))
        for dtype in (tf.float32, tf.bfloat16):
            a = tf.cast(tf.random.normal([n, n], seed=0), dtype)
            b = tf.cast(tf.random.normal([n, n], seed=1), dtype)
            median, low, high = _median_rate(lambda: product(a, b).numpy(), n ** 3, FLAGS.trials)
            print(f"{dtype.name} {n} x {n} matrix product: {median / 1e9:.1f} GMAC/s "
                  f"({low / 1e9:.1f} - {high / 1e9:.1f})")
        fused_batch_norm.use_fused_kernels(model)
        forward = tf.function(lambda x: model(x, training=False))
        images = tf.random.normal([FLAGS.batch, *clips.IMAGE_SHAPE], seed=2)
        median, low, high = _median_rate(lambda: forward(images).numpy(), FLAGS.batch, FLAGS.trials)
        print(f"{FLAGS.backbone} forward pass alone, float32, batch {FLAGS.batch}: {median:.1f} "
              f"images/s ({low:.1f} - {high:.1f}), {median * macs / 1e9:.1f} GMAC/s; "
              f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    app.run(main)
