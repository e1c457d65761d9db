"""--precision and --jit_compile: per-device decisions, mixed-precision models, XLA."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_audio_cnn import augment, config, datasets, devices, grid, metrics, recipe, trainer
from keras_audio_cnn import model as model_lib
from keras_audio_cnn.errors import ConfigError, RunError

RATE, SAMPLES, CLASSES = 8000, 4000, 3
GPU = devices.Devices(num_gpus=1, cpu_bf16=False)
TWO_GPUS = devices.Devices(num_gpus=2, cpu_bf16=False)
BF16_CPU = devices.Devices(num_gpus=0, cpu_bf16=True)
PLAIN_CPU = devices.Devices(num_gpus=0, cpu_bf16=False)


def waveforms(batch=8, seed=0):
    return np.random.default_rng(seed).uniform(-0.3, 0.3, (batch, SAMPLES)).astype("float32")


def tiny_model(dtype_policy, **kwargs):
    return model_lib.build_model("MobileNetV3Small", CLASSES, RATE, SAMPLES, weights="none",
                                 dtype_policy=dtype_policy, **kwargs)


def all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


def test_mixed_precision_follows_the_device():
    assert devices.resolve("mixed", "auto", GPU).dtype_policy == "mixed_float16"
    assert devices.resolve("mixed", "auto", TWO_GPUS).dtype_policy == "mixed_float16"
    assert devices.resolve("mixed", "auto", BF16_CPU).dtype_policy == "mixed_bfloat16"
    plain = devices.resolve("mixed", "auto", PLAIN_CPU)
    assert plain.dtype_policy == "float32"
    assert "avx512_bf16" in plain.note and "\n" not in plain.note
    for found in (GPU, BF16_CPU, PLAIN_CPU):
        settings = devices.resolve("float32", "auto", found)
        assert settings.dtype_policy == "float32" and settings.note is None
    assert devices.resolve("mixed", "auto", BF16_CPU).note is None


def test_a_onednn_limit_below_bfloat16_means_no_bfloat16(monkeypatch):
    """ONEDNN_MAX_CPU_ISA=AVX2 on a bfloat16 CPU: oneDNN has no bfloat16 convolution
    then (it fails to create one), so --precision=mixed computes in float32."""
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    assert devices.detect({}).cpu_bf16
    assert devices.detect({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}).cpu_bf16
    assert devices.detect({"ONEDNN_MAX_CPU_ISA": "ALL"}).cpu_bf16
    for limit in ("AVX2", "avx512_core", "AVX512_CORE_VNNI"):
        assert not devices.detect({"ONEDNN_MAX_CPU_ISA": limit}).cpu_bf16
    assert not devices.detect({"DNNL_MAX_CPU_ISA": "AVX2"}).cpu_bf16
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2"})
    assert not devices.detect({}).cpu_bf16


def test_jit_compile_auto_is_on_for_one_gpu_only_and_never_under_determinism():
    assert devices.resolve("float32", "auto", GPU).jit_compile is True
    assert devices.resolve("float32", "auto", TWO_GPUS).jit_compile is False
    assert devices.resolve("float32", "auto", GPU, deterministic=True).jit_compile is False
    assert devices.resolve("float32", "auto", BF16_CPU).jit_compile is False
    assert devices.resolve("float32", "auto", PLAIN_CPU).jit_compile is False
    assert devices.resolve("float32", "true", PLAIN_CPU).jit_compile is True
    assert devices.resolve("mixed", "false", GPU).jit_compile is False


def test_cpu_bf16_support_is_read_from_cpuinfo_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f amx_bf16 amx_tile\n")
    assert {"avx2", "amx_bf16"} <= devices.cpu_flags(str(cpuinfo))
    assert devices.cpu_flags(str(tmp_path / "missing")) == set()
    found = devices.detect()  # this machine
    assert found.num_gpus == len(tf.config.list_physical_devices("GPU"))
    assert found.cpu_bf16 == bool(devices.cpu_flags() & {"avx512_bf16", "amx_bf16"})


def test_bad_values_are_one_line_errors_before_anything_is_written(tmp_path):
    base = config.TrainConfig().replace(model_dir=str(tmp_path / "m"),
                                        data_dir=str(tmp_path / "d"))
    cases = [
        (dict(precision="half"), "unknown --precision='half'; use one of float32, mixed"),
        (dict(jit_compile="yes"), "unknown --jit_compile='yes'; use one of auto, true, false"),
        (dict(jit_compile="true", deterministic=True), "--jit_compile=true cannot be combined"),
    ]
    for options, message in cases:
        with pytest.raises((ConfigError, RunError)) as error:
            grid.run(base.replace(**options))
        assert message in str(error.value) and "\n" not in str(error.value)
    assert not os.listdir(tmp_path)
    with pytest.raises(RunError, match="--jit_compile=true fails on 2 GPUs"):
        devices.settings("float32", "true", found=TWO_GPUS)
    assert devices.settings("float32", "true", found=GPU).jit_compile


@pytest.fixture(scope="module")
def mixed_model():
    keras.utils.set_random_seed(0)
    model = tiny_model("mixed_bfloat16", dropout=0.1)
    # A freshly initialised MobileNetV3's activations fade to ~1e-10 by its last
    # block; BatchNorm statistics of real batches give it outputs worth comparing.
    batches = tf.data.Dataset.from_tensor_slices((waveforms(16), np.zeros(16))).batch(8)
    assert recipe.precise_batch_norm(model, batches) > 0
    return model


def test_mixed_model_computes_the_backbone_in_bfloat16_and_the_rest_in_float32(mixed_model):
    assert keras.config.dtype_policy().name == "float32"  # restored after building
    backbone = model_lib.get_backbone(mixed_model)
    assert mixed_model.get_layer("logmel_image").output.dtype == "float32"
    assert mixed_model.get_layer("normalization").output.dtype == "float32"
    assert backbone.output.dtype == "bfloat16"
    assert {layer.compute_dtype for layer in backbone.layers[1:]} == {"bfloat16"}
    assert mixed_model.get_layer("predictions").compute_dtype == "float32"
    assert {v.dtype for v in mixed_model.weights} == {"float32"}
    logits = mixed_model.predict(waveforms(), verbose=0)
    assert logits.dtype == np.float32 and np.isfinite(logits).all()
    assert logits.std(axis=0).max() > 0.01  # not a constant output


def test_a_float32_model_set_to_mixed_computes_as_the_mixed_build(mixed_model):
    """`model.set_dtype_policy` (predict.py --precision=mixed on a saved, float32 model)
    gives the model `build_model(dtype_policy=...)` builds: the same arithmetic."""
    plain = tiny_model("float32", dropout=0.1)
    plain.set_weights(mixed_model.get_weights())
    model_lib.set_dtype_policy(plain, "mixed_bfloat16")
    backbone = model_lib.get_backbone(plain)
    assert {layer.compute_dtype for layer in backbone.layers[1:]} == {"bfloat16"}
    for name in ("logmel_image", "normalization", "predictions"):
        assert plain.get_layer(name).compute_dtype == "float32"
    assert {v.dtype for v in plain.weights} == {"float32"}
    x = waveforms(seed=2)
    np.testing.assert_array_equal(plain.predict(x, verbose=0), mixed_model.predict(x, verbose=0))
    model_lib.set_dtype_policy(plain, "float32")  # and back
    assert {layer.dtype_policy.name for layer in all_layers(plain)} == {"float32"}


def test_float32_build_takes_the_mixed_weights_and_predicts_nearly_the_same(mixed_model):
    plain = tiny_model("float32", dropout=0.1)  # as the trainer copies a trained model
    plain.set_weights(mixed_model.get_weights())
    assert {layer.dtype_policy.name for layer in all_layers(plain)} == {"float32"}
    x = waveforms(seed=1)
    mixed, exact = mixed_model.predict(x, verbose=0), plain.predict(x, verbose=0)
    assert not np.array_equal(mixed, exact)  # the backbone did compute in bfloat16
    # bfloat16 keeps 8 significant bits, and an untrained MobileNetV3's ~50 layers
    # add up the rounding: over seeds 0-2 its mixed logits correlated 0.977 to
    # 0.996 with the float32 ones.
    assert np.corrcoef(mixed.ravel(), exact.ravel())[0, 1] > 0.95
    np.testing.assert_allclose(keras.ops.softmax(mixed), keras.ops.softmax(exact), atol=0.1)


def test_mixed_float16_training_model_gets_loss_scaling():
    model = tiny_model("mixed_float16")
    fitted = augment.AugmentPlan(("paper",)).training_model(model, RATE, seed=0)
    assert keras.config.dtype_policy().name == "float32"
    assert fitted.dtype_policy.name == "mixed_float16"
    assert fitted.get_layer("augment").compute_dtype == "float32"
    fitted.compile(keras.optimizers.Adam(1e-3),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert isinstance(fitted.optimizer, keras.optimizers.LossScaleOptimizer)


def test_jit_compile_true_trains_a_step_on_the_cpu():
    # Keras compiles the whole step with XLA: every op, frontend included, must have
    # an XLA kernel (keras.layers.Resizing(antialias=True) has none). A frozen
    # backbone keeps the compilation short; its forward pass is compiled all the same.
    with tf.distribute.MirroredStrategy().scope():
        model = tiny_model("float32", trainable="head")
        model.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=True)
    assert model.jit_compile is True
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(waveforms(), np.arange(8) % CLASSES, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


@pytest.fixture(scope="module")
def mixed_run(sounds):
    """One fold trained by the trainer under mixed_bfloat16 (forced: this CPU has no bf16)."""
    work = sounds
    source = datasets.open_source("audio_folder", str(work / "tfds"), audio_dir=str(work / "audio"),
                                  sample_rate=RATE, clip_seconds=0.5, num_folds=3)
    run_config = config.TrainConfig().replace(
        dataset="audio_folder", backbone="MobileNetV3Small", weights="none", augment="none",
        epochs=1, batch_size=8, verbose=0)
    task = source.tasks[0]
    run_dir = str(work / "fold1")
    settings = devices.Settings("mixed_bfloat16", jit_compile=False)
    model_metrics = trainer.train_model(run_config, source, grid.Job("fold1", task, run_dir, 1),
                                        tf.distribute.MirroredStrategy(), settings=settings)
    return dict(source=source, task=task, run_dir=run_dir, metrics=model_metrics, work=work)


def test_mixed_training_saves_float32_models_that_load_without_this_package(mixed_run):
    run_dir, work = mixed_run["run_dir"], mixed_run["work"]
    trained = mixed_run["metrics"]
    assert trained["dtype_policy"] == "mixed_bfloat16" and trained["jit_compile"] is False
    assert np.isfinite(trained["loss"])
    assert keras.config.dtype_policy().name == "float32"
    x = waveforms(batch=3, seed=2)
    np.save(work / "x.npy", x)
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        import tensorflow as tf
        model = tf.keras.models.load_model({os.path.join(run_dir, "model.keras")!r})
        def layers(m):
            for layer in m.layers:
                yield layer
                if isinstance(layer, tf.keras.Model):
                    yield from layers(layer)
        x = np.load({str(work / "x.npy")!r})
        served = tf.saved_model.load({os.path.join(run_dir, "saved_model")!r})
        json.dump({{
            "policies": sorted({{layer.dtype_policy.name for layer in layers(model)}}),
            "model_policy": model.dtype_policy.name,
            "probabilities": tf.nn.softmax(model.predict(x, verbose=0)).numpy().tolist(),
            "served": served.serve(tf.constant(x)).numpy().tolist(),
            "foreign": [m for m in sys.modules if m.startswith(("keras_audio_cnn", "tfds_builders"))],
        }}, sys.stdout)
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                            text=True, cwd=work, env=env, timeout=300)
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["policies"] == ["float32"] and loaded["model_policy"] == "float32"
    assert loaded["foreign"] == []
    np.testing.assert_allclose(loaded["served"], loaded["probabilities"], atol=1e-5)


def test_mixed_training_metrics_are_those_of_the_saved_float32_model(mixed_run):
    source, task, trained = mixed_run["source"], mixed_run["task"], mixed_run["metrics"]
    model = keras.saving.load_model(os.path.join(mixed_run["run_dir"], "model.keras"))
    again = metrics.evaluate(model, source.load(task, "test", 8), len(source.class_names))
    assert again["confusion_matrix"] == trained["confusion_matrix"]
    assert again["loss"] == pytest.approx(trained["loss"], rel=1e-5)
