"""The in-model log-mel frontend against librosa."""

import keras
import librosa
import numpy as np
import pytest
import tensorflow as tf

from keras_audio_cnn import frontend

ESC50_RATE, ESC50_SAMPLES = 44100, 220500


@pytest.fixture(scope="module")
def esc50_frontend():
    return frontend.build_frontend(ESC50_RATE, ESC50_SAMPLES)


def test_image_shape_is_128_by_250_by_3_for_esc50(esc50_frontend):
    images = esc50_frontend.predict(np.zeros((2, ESC50_SAMPLES), "float32"), verbose=0)
    assert images.shape == (2, 128, 250, 3)
    assert frontend.image_shape(ESC50_RATE, ESC50_SAMPLES) == (128, 250, 3)


def test_image_width_follows_clip_length():
    assert frontend.image_shape(22050, 30 * 22050) == (128, 1500, 3)
    assert frontend.image_shape(22050, 4 * 22050) == (128, 200, 3)
    # Short clips get the smallest width every backbone accepts.
    assert frontend.image_shape(8000, 4000) == (128, 75, 3)


@pytest.mark.parametrize("frequency", [440.0, 3000.0, 12000.0])
def test_pure_tone_peaks_in_the_mel_band_librosa_predicts(esc50_frontend, frequency, tone):
    images = esc50_frontend.predict(tone(frequency)[None], verbose=0)[0]
    # The band centres of a 128-band HTK filter bank from 0 Hz to Nyquist.
    centres = librosa.mel_frequencies(n_mels=130, fmin=0.0, fmax=ESC50_RATE / 2, htk=True)[1:-1]
    expected = int(np.argmin(np.abs(centres - frequency)))
    middle = images.shape[1] // 2
    for channel in range(3):
        assert int(np.argmax(images[:, middle, channel])) == expected, channel


def test_each_channel_equals_librosa_log_mel_before_resizing(esc50_frontend, tone):
    rng = np.random.default_rng(0)
    clip = (tone(1000.0) + 0.1 * rng.standard_normal(ESC50_SAMPLES)).astype("float32")
    for window_ms, hop_ms in zip(frontend.WINDOWS_MS, frontend.HOPS_MS):
        layer = esc50_frontend.get_layer(f"logmel_{window_ms}ms")
        ours = keras.Model(esc50_frontend.input, layer.output).predict(clip[None], verbose=0)[0]
        power = librosa.feature.melspectrogram(
            y=clip,
            sr=ESC50_RATE,
            n_fft=4410,
            hop_length=int(round(hop_ms * 44.1)),
            win_length=int(round(window_ms * 44.1)),
            window="hann",
            center=True,
            pad_mode="reflect",
            n_mels=128,
            fmin=0.0,
            fmax=ESC50_RATE / 2,
            htk=True,
            norm=None,
        )
        reference = 10 * np.log10(np.maximum(power, frontend.MIN_POWER))
        assert ours.shape == reference.shape
        # float32 FFTs against float64 ones: within 0.1 dB over a ~100 dB range.
        np.testing.assert_allclose(ours, reference, atol=0.1)


def test_resizing_equals_antialiased_bilinear_and_compiles_with_xla(esc50_frontend, tone):
    rng = np.random.default_rng(1)
    clip = (tone(700.0) + 0.1 * rng.standard_normal(ESC50_SAMPLES)).astype("float32")[None]
    outputs = [esc50_frontend.get_layer(f"logmel_{w}ms").output for w in frontend.WINDOWS_MS]
    spectrograms = keras.Model(esc50_frontend.input, outputs).predict(clip, verbose=0)
    image = esc50_frontend.predict(clip, verbose=0)
    for channel, spectrogram in enumerate(spectrograms):
        # What keras.layers.Resizing(128, 250, antialias=True) gives.
        expected = tf.image.resize(spectrogram[..., None], (128, 250), antialias=True)
        np.testing.assert_allclose(image[..., channel], expected[..., 0], atol=1e-3)
    compiled = tf.function(lambda x: esc50_frontend(x, training=False), jit_compile=True)
    np.testing.assert_allclose(compiled(clip).numpy(), image, atol=1e-3)


def test_a_clip_does_not_depend_on_the_rest_of_its_batch(esc50_frontend, tone):
    quiet = tone(500.0, amplitude=1e-3)
    loud = tone(2000.0, amplitude=1.0)
    alone = esc50_frontend.predict(quiet[None], verbose=0)[0]
    together = esc50_frontend.predict(np.stack([quiet, loud]), verbose=0)[0]
    np.testing.assert_allclose(alone, together, atol=1e-4)


def test_image_equals_the_reference_librosa_and_pil_image(esc50_frontend, tone):
    # benchmarks/reference.py is the per-clip librosa + PIL implementation the
    # frontend benchmark times: the two must compute the same image.
    from benchmarks import reference

    rng = np.random.default_rng(1)
    noisy_tone = tone(1000.0) + 0.1 * rng.standard_normal(ESC50_SAMPLES).astype("float32")
    clicks = np.zeros(ESC50_SAMPLES, "float32")
    clicks[::44100] = 0.9  # a click a second over digital silence (the -60 dB floor)
    for clip in (noisy_tone, clicks):
        ours = esc50_frontend.predict(clip[None], verbose=0)[0]
        expected = reference.log_mel_image(clip, ESC50_RATE)
        assert ours.shape == expected.shape == (128, 250, 3)
        # The resizing filters (TF's antialiased bilinear, PIL's bilinear) agree to
        # a few hundredths of a dB; 0.1 dB is the bound the benchmark states.
        np.testing.assert_allclose(ours, expected, atol=0.1)


# Clip lengths: every sample rate the datasets use, and lengths whose frame count
# `keras.layers.MelSpectrogram.compute_output_shape` gets wrong (one short of a
# multiple of a hop; a multiple of a hop with an odd FFT length, 22.05 kHz).
RATES = (8000, 16000, 22050, 44100, 48000)


def shortest_clip(sample_rate):
    return frontend.fft_length(sample_rate) // 2 + 1


@pytest.mark.parametrize("sample_rate", RATES)
def test_frame_count_is_what_the_stft_gives_for_every_residue_of_every_hop(sample_rate):
    # The resizing is built for `spectrogram_frames` input frames; it must be what
    # the STFT of the MelSpectrogram layers computes, whatever the clip length.
    # `keras.ops.stft` with a layer's own settings is what the layer runs.
    model = frontend.build_frontend(sample_rate, shortest_clip(sample_rate))
    for name, _, hop in frontend.channel_settings(sample_rate):
        mel = model.get_layer(name)
        frames = tf.function(
            lambda x, mel=mel: tf.shape(
                keras.ops.stft(x, mel.sequence_length, mel.sequence_stride, mel.fft_length,
                               window=mel.window, center=True)[0]
            )[-2],
            input_signature=[tf.TensorSpec([1, None], tf.float32)],
        )
        base = shortest_clip(sample_rate)
        for length in range(base, base + hop):  # every residue modulo the hop
            expected = frontend.spectrogram_frames(length, mel.fft_length, hop)
            assert int(frames(tf.zeros([1, length]))) == expected, (name, length)


def risky_lengths(sample_rate):
    """Lengths near every multiple of each hop: residues 0, 1, hop-2 and hop-1."""
    lengths = set()
    base = shortest_clip(sample_rate)
    for _, _, hop in frontend.channel_settings(sample_rate):
        multiple = -(-base // hop) * hop + hop
        lengths.update(multiple + offset for offset in (-2, -1, 0, 1))
    return sorted(lengths)


def assert_frontend_runs(sample_rate, num_samples):
    model = frontend.build_frontend(sample_rate, num_samples)
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    every_output = keras.Model(model.input, [layer.output for layer in layers])
    rng = np.random.default_rng(num_samples)
    waveforms = rng.uniform(-0.5, 0.5, (2, num_samples)).astype("float32")
    outputs = every_output(waveforms)
    for layer, output in zip(layers, outputs):
        # The symbolic shape of every layer agrees with what it computes (an
        # unknown length agrees with any).
        symbolic = layer.output.shape
        assert len(symbolic) == len(output.shape), layer.name
        for known, real in zip(symbolic[1:], output.shape[1:]):
            assert known in (None, real), (layer.name, symbolic, output.shape)
    image = keras.ops.convert_to_numpy(outputs[-1])
    assert image.shape == (2, *frontend.image_shape(sample_rate, num_samples))
    assert np.all(np.isfinite(image))


@pytest.mark.parametrize("sample_rate", RATES)
def test_every_clip_length_near_a_multiple_of_a_hop_builds_and_runs(sample_rate):
    for num_samples in risky_lengths(sample_rate):
        assert_frontend_runs(sample_rate, num_samples)


@pytest.mark.parametrize(
    "sample_rate, num_samples",
    [
        (44100, 44000),
        (16000, 15999),
        (44100, 220499),  # ESC-50 less one sample
        (22050, 80 * 1102),  # odd FFT length (2205), a multiple of the 50 ms hop
        (100, 500),  # a hop of one sample
        (51, 60),  # the lowest rate: one-sample windows and hops, a 5-point FFT
    ],
)
def test_clip_lengths_that_used_to_crash_give_the_image(sample_rate, num_samples):
    assert_frontend_runs(sample_rate, num_samples)


def test_a_clip_length_that_used_to_crash_saves_and_loads_with_built_in_layers(tmp_path):
    model = frontend.build_frontend(16000, 15999)
    waveform = np.random.default_rng(0).uniform(-0.5, 0.5, (1, 15999)).astype("float32")
    model.save(tmp_path / "frontend.keras")
    loaded = keras.saving.load_model(tmp_path / "frontend.keras", safe_mode=True)
    assert {type(layer).__module__.split(".")[0] for layer in loaded.layers} == {"keras"}
    # The built model computes per clip (frontend.compute_per_clip), the loaded one with
    # Keras's batched layers: the same values to float32 rounding.
    np.testing.assert_allclose(loaded(waveform), model(waveform), atol=1e-4)


def test_the_shortest_clip_is_stretched_to_the_narrowest_image():
    num_samples = shortest_clip(8000)  # 401 samples, 50 ms
    assert frontend.image_shape(8000, num_samples) == (128, frontend.MIN_FRAMES, 3)
    assert_frontend_runs(8000, num_samples)


@pytest.mark.parametrize(
    "sample_rate, num_samples, message",
    [
        (44100, 441, "more than 2205 samples"),  # 10 ms: nothing to reflect-pad with
        (8000, 400, "more than 400 samples"),
        (50, 1000, "gives a window or hop of 0 samples"),
        (0, 1000, "must be positive"),
        (16000, 1600.5, "whole number of samples"),
    ],
)
def test_impossible_settings_are_one_clear_error(sample_rate, num_samples, message):
    with pytest.raises(frontend.ClipSettingsError, match=message):
        frontend.image_shape(sample_rate, num_samples)
    with pytest.raises(frontend.ClipSettingsError, match=message):
        frontend.build_frontend(sample_rate, num_samples)


@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")),
                    reason="on a GPU the layers compute whole batches")
@pytest.mark.parametrize("sample_rate, num_samples", [
    (16000, 32000), (16000, 15999), (22050, 44100), (22050, 22049), (44100, 44100)])
def test_per_clip_kernel_gives_the_batched_layers_values_and_saves_unchanged(
        tmp_path, sample_rate, num_samples):
    # On a CPU the frontend's MelSpectrogram layers compute one clip at a time
    # (frontend.compute_per_clip); the saved model has Keras's own layers, which
    # compute the batch at once: the images must agree, XLA-compiled too.
    model = frontend.build_frontend(sample_rate, num_samples)
    names = [name for name, _, _ in frontend.channel_settings(sample_rate)]
    assert all(getattr(model.get_layer(name), frontend._PER_CLIP, False) for name in names)
    rng = np.random.default_rng(0)
    t = np.arange(num_samples) / sample_rate
    waveforms = np.stack([
        rng.uniform(-0.5, 0.5, num_samples),
        0.8 * np.sin(2 * np.pi * 440 * t),
        np.zeros(num_samples),
    ]).astype("float32")
    model.save(tmp_path / "frontend.keras")
    loaded = keras.saving.load_model(tmp_path / "frontend.keras", safe_mode=True)
    assert not any(getattr(loaded.get_layer(name), frontend._PER_CLIP, False) for name in names)
    for name in names:
        assert loaded.get_layer(name).get_config() == model.get_layer(name).get_config()
    batched = keras.ops.convert_to_numpy(loaded(waveforms))
    per_clip = keras.ops.convert_to_numpy(model(waveforms))
    np.testing.assert_allclose(per_clip, batched, atol=1e-4)
    compiled = tf.function(lambda x: model(x, training=False), jit_compile=True)
    np.testing.assert_allclose(compiled(waveforms).numpy(), batched, atol=1e-4)
    # One clip alone is the batch's clip.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(waveforms[1:2]))[0],
                               per_clip[1], atol=1e-4)
    # A loaded model switched to the per-clip kernel computes as the built one.
    assert frontend.use_per_clip_kernels(loaded) == 3
    assert frontend.use_per_clip_kernels(loaded) == 0  # once
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(waveforms)), per_clip, atol=1e-4)
