"""Where a training step's time goes: a TensorFlow profiler trace and its breakdown.

    python -m benchmarks.profile_step                      # the project's DenseNet201 step
    python -m benchmarks.profile_step --side=plain_train   # plain Keras, for comparison
    tensorboard --logdir=runs/benchmarks/profile           # the trace (Profile tab; needs
                                                           # pip install tensorboard-plugin-profile)

Sets up the side of the train-step benchmark (`benchmarks.sides`), warms it, traces
`--steps` steps with `tf.profiler.experimental` and reads the trace back
(`*.xplane.pb`): the time of every TensorFlow op the executor ran, grouped by what
the op belongs to (its name scope: frontend, Augment, backbone forward and backward
with BatchNorm, ReLU, convolutions and DenseNet's concatenations apart, the L2
penalty, Adam, loss and metrics). Op times of the two executor threads add up, so
their sum can exceed the wall time. Input is not in this trace (the side trains on
batches already in memory): the train-step benchmark's input-wait row measures it.
"""

import collections
import glob
import os
import re
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_enum("side", "ours_train", ["ours_train", "plain_train"], "Which side to trace.")
flags.DEFINE_string("backbone", "DenseNet201", "The backbone.")
flags.DEFINE_integer("steps", 3, "Steps traced (after two warm-up steps).")
flags.DEFINE_string("logdir", os.path.join("runs", "benchmarks", "profile"),
                    "Where the trace is written (TensorBoard's --logdir).")
FLAGS = flags.FLAGS

# (category, test on the op's scope path and type), first match wins.
CATEGORIES = (
    ("frontend (log-mel image)", lambda p, t: "/logmel_" in p or "waveform_any_length" in p),
    ("augmentation (Augment layer)", lambda p, t: "/augment/" in p),
    ("input normalisation", lambda p, t: "/normalization/" in p),
    ("optimiser (Adam)", lambda p, t: p.startswith("adam/") or "/adam/" in p),
    ("loss and metrics", lambda p, t: "compile_loss" in p or "metrics" in p
     or "accuracy" in p),
)


def _backbone_category(path, op_type):
    direction = "backward" if "gradient_tape/" in path else "forward"
    if "BatchNorm" in op_type:
        kind = "BatchNorm"
    elif op_type.startswith(("Relu", "_MklRelu")) or "ReluGrad" in op_type:
        kind = "ReLU"
    elif "Conv2D" in op_type or "MatMul" in op_type:
        kind = "convolutions"
    elif op_type in ("ConcatV2", "_MklConcatV2", "Slice", "_MklNativeConcatV2", "AddN"):
        kind = "concatenation (and its gradient: slices, sums)"
    else:
        kind = "other ops"
    return f"backbone {direction}: {kind}"


def categorize(path, op_type, backbone_scope):
    """The category of one op, from its name-scope path and its type."""
    for name, test in CATEGORIES:
        if test(path, op_type):
            return name
    if f"/{backbone_scope}/" in path or "/pool/" in path or "/predictions/" in path:
        return _backbone_category(path, op_type)
    if path.startswith("gradient_tape/") and "/" not in path[len("gradient_tape/"):].rstrip("/"):
        return "L2 penalty (weight decay) and gradient sums"
    if "/" not in path or path.startswith("gradient_tape/"):
        # Top-level ops outside the model: the regularisers' Square/Sum/mul, their
        # gradients, and AddN adding them to each variable's gradient.
        return "L2 penalty (weight decay) and gradient sums"
    return "other"


def breakdown(xplane_path, backbone_scope):
    """{category: seconds} of op time, and the total, from one trace file."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(xplane_path, "rb") as f:
        space.ParseFromString(f.read())
    host = next(p for p in space.planes if p.name == "/host:CPU")
    names = {key: meta.name for key, meta in host.event_metadata.items()}
    seconds = collections.Counter()
    for line in host.lines:
        if not line.name.startswith("tf_Compute"):
            continue
        for event in line.events:
            name = names[event.metadata_id]
            if ":" not in name or "::" in name:  # executor bookkeeping, not an op
                continue
            path, op_type = name.rsplit(":", 1)
            path = path.split("/", 1)[1] if path.startswith("StatefulPartitionedCall/") else path
            # Keras suffixes scopes it opens again: "densenet201_1/conv1_bn_1" -> "densenet201/conv1_bn".
            path = "/".join(re.sub(r"_\d+$", "", part) for part in path.split("/"))
            seconds[categorize(path, op_type, backbone_scope)] += event.duration_ps / 1e12
    return seconds


def main(argv):
    if len(argv) > 1:
        sys.exit(f"profile_step: error: unexpected arguments {argv[1:]}")
    from benchmarks import common, sides

    side = getattr(sides, FLAGS.side)(backbone=FLAGS.backbone)  # before TensorFlow's import
    import tensorflow as tf

    side.call()
    side.call()
    start = time.perf_counter()
    for _ in range(FLAGS.steps):
        side.call()
    untraced = (time.perf_counter() - start) / FLAGS.steps
    load_before = common.load_average()
    logdir = os.path.abspath(FLAGS.logdir)
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    for _ in range(FLAGS.steps):
        side.call()
    traced = (time.perf_counter() - start) / FLAGS.steps
    tf.profiler.experimental.stop()
    load = (load_before, common.load_average())
    newest = max(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")),
                 key=os.path.getmtime)
    seconds = breakdown(newest, FLAGS.backbone.lower())
    total = sum(seconds.values())
    print(f"{FLAGS.side} {FLAGS.backbone}, batch {side.items}: {side.info}")
    print(f"step wall time {untraced:.2f} s untraced, {traced:.2f} s traced ({FLAGS.steps} "
          f"steps each); load average before / after the trace {load[0]} / {load[1]}")
    print(f"op time {total / FLAGS.steps:.2f} s a step (both executor threads summed)\n")
    print("| part of the step | op time a step (s) | share |")
    print("|---|---|---|")
    for category, value in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"| {category} | {value / FLAGS.steps:.3f} | {100 * value / total:.1f}% |")
    print(f"\ntrace: {newest}\nview it: tensorboard --logdir={logdir}")


if __name__ == "__main__":
    app.run(main)
