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
