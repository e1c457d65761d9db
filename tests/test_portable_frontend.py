"""The portable (LiteRT/ONNX) frontend against the Keras frontend, and its exports."""

import importlib.util
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from benchmarks.portable_frontend import calibrated_model, clips
from keras_audio_cnn import frontend, portable_frontend as portable
from keras_audio_cnn.errors import PredictionError

RATE, SAMPLES = 8000, 4000  # 0.5 s clips: 128 x 75 images
# Both frontends compute in float32: the FFT of `keras.ops.stft` and the DFTs
# here round differently. On noise they agree to ~1e-4 dB; the differences are
# in the spectral leakage of pure tones and chirps 60-110 dB below the clip's
# peak (float32 keeps ~7 digits of the peak's amplitude), where Keras's own
# float32 FFT is as far from a float64 FFT. Measured maxima: 0.09 dB overall,
# 0.0083 dB within 50 dB of the peak (tests and benchmarks/portable_frontend.py).
MAX_DB = 0.1  # every value of the image
MAX_DB_NEAR_PEAK = 0.01  # values within 50 dB of the clip's largest


def assert_images_agree(sample_rate, waveforms, max_db_near_peak=MAX_DB_NEAR_PEAK, **kwargs):
    num_samples = waveforms.shape[-1]
    expected = keras.ops.convert_to_numpy(
        frontend.build_frontend(sample_rate, num_samples)(waveforms)
    )
    layer = portable.PortableLogMelImage(sample_rate, num_samples, **kwargs)
    ours = keras.ops.convert_to_numpy(layer(waveforms))
    assert ours.shape == expected.shape == (len(waveforms), *frontend.image_shape(sample_rate, num_samples))
    difference = np.abs(ours - expected)
    assert difference.max() <= MAX_DB, difference.max()
    near_peak = expected > expected.max(axis=(1, 2, 3), keepdims=True) - 50
    assert difference[near_peak].max() <= max_db_near_peak, difference[near_peak].max()
    return layer


def test_image_equals_the_keras_frontend_on_short_clips():
    waveforms = np.stack(list(clips(RATE, SAMPLES).values()))
    layer = assert_images_agree(RATE, waveforms)
    # The 800-point FFT is split into two small DFTs for every channel.
    assert all(channel["plan"].n2 > 1 for channel in layer.channels)


def test_image_equals_the_keras_frontend_on_an_esc50_clip():
    rng = np.random.default_rng(2)
    t = np.arange(220500) / 44100
    clip = 0.3 * np.sin(2 * np.pi * 1000 * t) + 0.05 * rng.standard_normal(t.size)
    assert_images_agree(44100, clip[None].astype("float32"))


def test_a_prime_fft_length_uses_one_dense_dft():
    sample_rate = 10130  # 100 ms is 1013 samples, a prime
    waveforms = np.stack(list(clips(sample_rate, sample_rate // 2).values())[:3])
    layer = assert_images_agree(sample_rate, waveforms)
    assert layer.fft_length == 1013
    assert all(channel["plan"].dense for channel in layer.channels)


def test_dense_and_split_dfts_agree_at_22050_hz():
    # An odd FFT length (2205 = 3^2 5 7^2) and an odd number of rows.
    waveforms = np.stack(list(clips(22050, 22050).values())[:3])
    # One dense DFT sums 2205 float32 products per bin, in the order of the matrix
    # product's kernel: 0.0083 dB near the peak with the constant on the right of
    # the product, 0.0106 dB (2 of 60497 values, 38 dB below the peak) with it on
    # the left as now. The split DFT below stays within 0.0022 dB.
    assert_images_agree(22050, waveforms, max_db_near_peak=0.02, dense=True)
    assert_images_agree(22050, waveforms)


@pytest.fixture(scope="module")
def classifier():
    waveforms = np.stack(list(clips(RATE, SAMPLES).values()))
    model = calibrated_model(RATE, SAMPLES, waveforms, num_classes=4)
    return model, waveforms


def probabilities(logits):
    return keras.ops.convert_to_numpy(keras.ops.softmax(np.asarray(logits, "float32")))


def test_portable_model_shares_the_weights_and_gives_the_same_probabilities(classifier, tmp_path):
    model, waveforms = classifier
    expected = probabilities(model(waveforms))
    assert expected.max() > 0.5  # the calibrated model's outputs depend on its input
    converted = portable.portable_model(model)
    assert converted.input_shape == model.input_shape
    after = {id(v) for layer in converted.layers for v in layer.weights}
    assert all(id(v) in after for v in model.get_layer("predictions").weights)
    np.testing.assert_allclose(probabilities(converted(waveforms)), expected, atol=1e-3)
    # And from the saved .keras file: the settings are read from the model.
    model.save(tmp_path / "model.keras")
    loaded = portable.portable_model(keras.saving.load_model(tmp_path / "model.keras"))
    np.testing.assert_allclose(probabilities(loaded(waveforms)), expected, atol=1e-3)
    with pytest.raises(ValueError, match="takes 4000 samples at 8000 Hz"):
        portable.portable_model(model, sample_rate=16000)


def tflite_interpreter(**kwargs):
    with warnings.catch_warnings():  # deprecated in favour of ai_edge_litert
        warnings.simplefilter("ignore", UserWarning)
        return tf.lite.Interpreter(**kwargs)


def run_tflite(interpreter, waveforms):
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]
    outputs = []
    for waveform in waveforms:
        interpreter.set_tensor(source, waveform[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(target)[0])
    return np.stack(outputs)


def test_tflite_with_builtin_ops_only_runs_and_equals_keras(classifier, tmp_path):
    model, waveforms = classifier
    expected = probabilities(model(waveforms))
    flatbuffer = portable.to_tflite(portable.portable_model(model))  # TFLITE_BUILTINS only
    path = tmp_path / "model.tflite"
    path.write_bytes(flatbuffer)

    interpreter = tflite_interpreter(model_path=str(path))
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "RFFT2D" not in ops and not any("FLEX" in op or "CUSTOM" in op for op in ops)
    np.testing.assert_allclose(probabilities(run_tflite(interpreter, waveforms)), expected, atol=1e-3)

    if importlib.util.find_spec("ai_edge_litert") is None:
        pytest.skip("ai_edge_litert is not installed (pip install ai-edge-litert)")
    from ai_edge_litert.interpreter import Interpreter

    litert = probabilities(run_tflite(Interpreter(model_path=str(path)), waveforms))
    np.testing.assert_allclose(litert, expected, atol=1e-3)


def test_the_keras_frontend_itself_does_not_run_in_tflite():
    # Why the portable frontend exists: LiteRT's RFFT2D takes powers of two only.
    # On a CPU the spectrogram layers loop over the clips (frontend.compute_per_clip),
    # so the RFFT is prepared when the loop first runs, not when tensors are allocated.
    keras_frontend = frontend.build_frontend(RATE, SAMPLES)
    interpreter = tflite_interpreter(model_content=portable.to_tflite(keras_frontend))
    with pytest.raises(RuntimeError, match="IsPowerOfTwo"):
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"],
                               np.zeros((1, SAMPLES), "float32"))
        interpreter.invoke()


@pytest.mark.skipif(
    importlib.util.find_spec("tf2onnx") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="tf2onnx and onnxruntime are not installed (optional; see benchmarks/portable_frontend.py)",
)
def test_onnx_export_equals_keras(classifier):
    import onnxruntime

    model, waveforms = classifier
    proto = portable.to_onnx(portable.portable_model(model))
    assert not {node.op_type for node in proto.graph.node} & {"DFT", "STFT"}
    session = onnxruntime.InferenceSession(
        proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    outputs = session.run(None, {session.get_inputs()[0].name: waveforms})[0]
    np.testing.assert_allclose(probabilities(outputs), probabilities(model(waveforms)), atol=1e-3)


def image_and_classes(sample_rate, num_samples, layer=portable.PortableLogMelImage):
    """Waveforms -> (the portable image, a small convolutional classifier's logits)."""
    keras.utils.set_random_seed(1)
    waveform = keras.Input((num_samples,))
    image = layer(sample_rate, num_samples, name="portable_logmel_image")(waveform)
    x = keras.layers.Conv2D(64, 3, strides=2, activation="relu")(image)  # >= 1024 weights
    logits = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(waveform, [image, logits])


def test_quantized_tflite_keeps_the_frontend_in_float(classifier):
    # Quantizing the frontend's DFT and mel matrices (and, for int8, its 80 dB of
    # power) put the image tens of dB off and a trained model at chance accuracy.
    _, waveforms = classifier
    model = image_and_classes(RATE, SAMPLES)
    expected_image, _ = (keras.ops.convert_to_numpy(x) for x in model(waveforms))

    def representative():
        for waveform in waveforms:
            yield [waveform[None]]

    for quantize in ("dynamic", "int8"):
        content = portable.to_tflite(model, quantize=quantize, representative=representative)
        interpreter = tflite_interpreter(model_content=content)
        assert any(np.dtype(d["dtype"]) == np.int8 for d in interpreter.get_tensor_details())
        interpreter.allocate_tensors()
        outputs = {tuple(d["shape"][1:]): d["index"] for d in interpreter.get_output_details()}
        images = []
        for waveform in waveforms:
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], waveform[None])
            interpreter.invoke()
            images.append(interpreter.get_tensor(outputs[expected_image.shape[1:]])[0])
        difference = np.abs(np.stack(images) - expected_image).max()
        if quantize == "dynamic":  # the frontend computes in float32 as without quantization
            assert difference <= MAX_DB, difference
        else:  # the image itself is the first convolution's int8 input: one step of 256
            assert difference <= np.ptp(expected_image) / 255, difference


class _RightHandMatrix(portable.PortableLogMelImage):
    """The image times a constant matrix on the right, as the frontend's products were."""

    def call(self, waveforms):
        image = super().call(waveforms)
        mixing = np.eye(self.frames, dtype="float32") * 0.5 + 0.5 / self.frames
        return keras.ops.transpose(
            keras.ops.matmul(keras.ops.transpose(image, (0, 1, 3, 2)), mixing), (0, 1, 3, 2))


def test_a_frontend_the_quantizer_would_quantize_is_refused_not_written():
    model = image_and_classes(RATE, SAMPLES, layer=_RightHandMatrix)
    portable.to_tflite(model)  # float: nothing to check
    with pytest.raises(PredictionError,
                       match=r"the dynamic \.tflite quantized \d+ frontend tensors .* nothing was"):
        portable.to_tflite(model, quantize="dynamic")
