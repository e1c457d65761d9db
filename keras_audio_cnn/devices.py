"""Numeric precision and XLA compilation for the devices a run trains on.

`--precision=mixed` computes the backbone in float16 on GPUs and in bfloat16 on CPUs
with bfloat16 instructions (AVX512_BF16 or AMX); the variables, the spectrogram
frontend, its normalisation and the logits stay float32. Elsewhere it falls back to
float32: a CPU without those instructions emulates bfloat16 arithmetic.

`--jit_compile=auto` compiles with XLA on a single GPU only. Keras's own "auto" turns
XLA off under `tf.distribute`, which every run uses, so the choice is made here and
passed to `compile()` as a bool. Keras 3 compiles the whole distributed step, which
fails with several replicas ("Trying to access resource .../replica_1 located in
device ...:1 from device ...:0", keras-team/keras#19005; reproduced here with two
logical CPUs), so XLA needs exactly one GPU.
"""

import contextlib
import dataclasses
import os

import keras
import tensorflow as tf

from keras_audio_cnn.errors import RunError

# /proc/cpuinfo flags of CPUs with bfloat16 arithmetic.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# oneDNN instruction-set limits (ONEDNN_MAX_CPU_ISA, e.g. to behave as an AVX2 CPU)
# under which oneDNN has no bfloat16 convolution: it then fails to create one.
_ISAS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                      "AVX512_CORE_VNNI")


@dataclasses.dataclass(frozen=True)
class Devices:
    """The facts the settings depend on."""

    num_gpus: int
    cpu_bf16: bool


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a run trains with, resolved for its devices."""

    dtype_policy: str  # "float32", "mixed_float16" or "mixed_bfloat16"
    jit_compile: bool
    note: str | None = None  # why a request was not followed, to print once


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU's feature flags (empty where there is no /proc/cpuinfo, e.g. macOS)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def detect(environ=os.environ):
    """The devices of this process: visible GPUs, and bfloat16 support of the CPU (its
    flags, unless `ONEDNN_MAX_CPU_ISA` keeps oneDNN below its bfloat16 instructions)."""
    limit = (environ.get("ONEDNN_MAX_CPU_ISA") or environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    return Devices(
        num_gpus=len(tf.config.list_physical_devices("GPU")),
        cpu_bf16=bool(cpu_flags() & set(BF16_CPU_FLAGS)) and limit not in _ISAS_WITHOUT_BF16,
    )


def resolve(precision, jit_compile, devices, deterministic=False):
    """The dtype policy and XLA setting for `--precision` and `--jit_compile`.

    Args:
        precision: "float32" or "mixed" (`TrainConfig.precision`).
        jit_compile: "auto", "true" or "false" (`TrainConfig.jit_compile`).
        devices: a `Devices` (from `detect()`, or made up in tests).
        deterministic: TensorFlow op determinism is on; Keras then refuses XLA,
            so "auto" means off.

    `settings` refuses the combinations that cannot work (jit_compile "true"
    with determinism or with several GPUs) before resolving.
    """
    note = None
    if precision == "float32":
        policy = "float32"
    elif devices.num_gpus:
        policy = "mixed_float16"
    elif devices.cpu_bf16:
        policy = "mixed_bfloat16"
    else:
        policy = "float32"
        note = (
            "--precision=mixed: computing in float32, because this machine has no GPU "
            f"and its CPU has no bfloat16 instructions ({' or '.join(BF16_CPU_FLAGS)} in "
            "/proc/cpuinfo, and ONEDNN_MAX_CPU_ISA not below them), so bfloat16 would be "
            "emulated in software"
        )
    if jit_compile == "auto":
        jit = devices.num_gpus == 1 and not deterministic
    else:
        jit = jit_compile == "true"
    return Settings(policy, jit, note)


def settings(precision, jit_compile, deterministic=False, found=None):
    """The dtype policy and XLA setting of a run on `found` (default: this process's devices).

    Raises:
        RunError: --jit_compile=true with --deterministic (Keras refuses XLA under
            op determinism) or with several GPUs (see the module docstring).
    """
    found = found or detect()
    if jit_compile == "true" and deterministic:
        raise RunError("--jit_compile=true cannot be combined with --deterministic: Keras "
                       "turns XLA off under op determinism; use --jit_compile=auto or false")
    if jit_compile == "true" and found.num_gpus > 1:
        raise RunError(f"--jit_compile=true fails on {found.num_gpus} GPUs: Keras 3 cannot "
                       "compile a step whose variables live on several devices "
                       "(keras-team/keras#19005); use --jit_compile=auto or false, or one GPU "
                       "(CUDA_VISIBLE_DEVICES=0)")
    return resolve(precision, jit_compile, found, deterministic=deterministic)


@contextlib.contextmanager
def dtype_policy(name):
    """Sets Keras's global dtype policy inside the block and restores it after.

    `keras.applications` constructors take no dtype: their layers follow the global
    policy, so a mixed-precision backbone is built inside this block. Restoring it
    keeps one model's policy from leaking into the next job or test.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
