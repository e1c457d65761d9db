"""In-graph augmentation of log-mel images: pitch, time, masks, the layer, mixup."""

import keras
import librosa
import numpy as np
import pytest
import tensorflow as tf

from keras_audio_cnn import augment, frontend, image_transforms

RATE, SAMPLES = 22050, 2 * 22050
FLOOR = image_transforms.FLOOR_DB


@pytest.fixture(scope="module")
def to_image():
    return frontend.build_frontend(RATE, SAMPLES)


@pytest.fixture(scope="module")
def clip(tone):
    """`clip(frequency, start=0.0)`: a 2 s tone at 22.05 kHz, silent before `start`."""
    return lambda frequency, start=0.0: tone(frequency, RATE, SAMPLES, start=start)


def nearest_band(frequency):
    centres = librosa.mel_frequencies(n_mels=130, fmin=0.0, fmax=RATE / 2, htk=True)[1:-1]
    return int(np.argmin(np.abs(centres - frequency)))


def random_images(batch=4, bands=128, frames=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-60.0, 20.0, (batch, bands, frames, 3)).astype("float32")


def test_floor_is_the_frontend_value_of_silence(to_image):
    assert FLOOR == pytest.approx(-60.0)
    silence = to_image.predict(np.zeros((1, SAMPLES), "float32"), verbose=0)
    np.testing.assert_allclose(silence, FLOOR, atol=1e-4)


@pytest.mark.parametrize("frequency", [500.0, 2000.0])
@pytest.mark.parametrize("semitones", [2.0, -2.0])
def test_pitch_shift_moves_a_tone_peak_by_semitones(to_image, frequency, semitones, clip):
    images = to_image.predict(clip(frequency)[None], verbose=0)
    shifted = image_transforms.pitch_shift(images, tf.constant([semitones]), RATE).numpy()[0]
    expected = nearest_band(frequency * 2 ** (semitones / 12))
    assert expected != nearest_band(frequency)
    middle = shifted.shape[1] // 2
    for channel in range(3):
        assert abs(int(np.argmax(shifted[:, middle, channel])) - expected) <= 1, channel


def test_pitch_shift_per_example_in_graph_mode(to_image, clip):
    images = to_image.predict(np.stack([clip(1000.0)] * 3), verbose=0)
    shift = tf.function(lambda x, s: image_transforms.pitch_shift(x, s, RATE))
    shifted = shift(images, tf.constant([-2.0, 0.0, 2.0])).numpy()
    middle = images.shape[2] // 2
    peaks = [int(np.argmax(shifted[i, :, middle, 0])) for i in range(3)]
    assert peaks[0] < peaks[1] < peaks[2]
    np.testing.assert_array_equal(shifted[1], images[1])  # 0 semitones: identity
    assert shifted.shape == images.shape


def test_pitch_shift_down_fills_the_top_bands_with_the_floor():
    images = np.zeros((1, 128, 5, 3), "float32")
    shifted = image_transforms.pitch_shift(images, tf.constant([-2.0]), RATE).numpy()[0]
    # Near Nyquist the band step is about 0.5 semitone: the top few bands read
    # above the highest band.
    np.testing.assert_array_equal(shifted[-2:], FLOOR)
    np.testing.assert_array_equal(shifted[:100], 0.0)


def onset_frame(image, threshold=-30.0):
    loud = np.max(image[:, :, 0], axis=0) > threshold
    return int(np.argmax(loud))


def test_time_stretch_moves_an_onset_to_t_over_rate(to_image, clip):
    images = to_image.predict(clip(1000.0, start=1.2)[None], verbose=0)
    onset = onset_frame(images[0])
    assert abs(onset - 60) <= 1
    for rate in (0.9, 1.2):
        stretched = image_transforms.time_stretch(images, tf.constant([rate])).numpy()
        assert stretched.shape == images.shape
        assert abs(onset_frame(stretched[0]) - onset / rate) <= 1


def test_time_stretch_reads_frame_t_times_rate_exactly():
    ramp = np.broadcast_to(np.arange(10, dtype="float32")[:, None], (2, 4, 10, 1)).copy()
    stretched = image_transforms.time_stretch(ramp, tf.constant([1.0, 1.5])).numpy()
    np.testing.assert_array_equal(stretched[0], ramp[0])  # rate 1: identity
    expected = np.arange(10) * 1.5
    expected = np.where(expected <= 9, expected, FLOOR)  # past the end: floor
    np.testing.assert_allclose(stretched[1, 0, :, 0], expected, atol=1e-5)


def test_spec_augment_masks_frames_and_bands():
    images = random_images(batch=2)
    masked = image_transforms.spec_augment(
        images, seed=3, time_masks=2, time_width=10, freq_masks=2, freq_width=20
    ).numpy()
    assert masked.shape == images.shape
    changed = masked != images
    assert changed.any()
    np.testing.assert_array_equal(masked[changed], FLOOR)
    # A masked cell is masked in every channel, and masks are whole rows or columns.
    for example in range(2):
        cells = changed[example].all(axis=-1)
        assert (changed[example].any(axis=-1) == cells).all()
        full_bands = cells.all(axis=1)
        full_frames = cells.all(axis=0)
        assert (cells == (full_bands[:, None] | full_frames[None, :])).all()
        assert full_bands.sum() <= 40 and full_frames.sum() <= 20


def test_spec_augment_mean_fill_and_int_seed_repeat():
    images = random_images(batch=2)
    first = image_transforms.spec_augment(images, seed=5, fill="mean", time_width=30).numpy()
    again = image_transforms.spec_augment(images, seed=5, fill="mean", time_width=30).numpy()
    np.testing.assert_array_equal(first, again)
    means = images.mean(axis=(1, 2))
    changed = first != images
    assert changed.any()
    for example in range(2):
        for channel in range(3):
            values = first[example, :, :, channel][changed[example, :, :, channel]]
            np.testing.assert_allclose(values, means[example, channel], rtol=1e-5)


def test_augment_is_identity_unless_training():
    layer = augment.Augment(("paper", "specaugment"), RATE, seed=0)
    images = random_images()
    flags = np.ones(4, "float32")
    np.testing.assert_array_equal(layer([images, flags], training=False), images)
    np.testing.assert_array_equal(layer([images, flags]), images)


def test_augment_changes_only_flagged_examples():
    layer = augment.Augment(("paper", "specaugment"), RATE, seed=0)
    images = random_images()
    flags = np.array([0, 1, 1, 0], "float32")
    out = np.asarray(layer([images, flags], training=True))
    assert out.shape == images.shape
    np.testing.assert_array_equal(out[[0, 3]], images[[0, 3]])
    for example in (1, 2):
        assert not np.allclose(out[example], images[example])


def test_augment_draws_follow_the_seed():
    images = random_images()
    flags = np.ones(4, "float32")

    def run(seed):
        layer = augment.Augment(("paper", "specaugment"), RATE, seed=seed)
        return [np.asarray(layer([images, flags], training=True)) for _ in range(2)]

    first, again, other = run(1), run(1), run(2)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], first[1])  # fresh draws on every call
    assert not np.array_equal(first[0], other[0])


def test_augment_config_round_trip_and_policy_check():
    layer = augment.Augment(("specaugment",), 16000, seed=7, time_width=5, fill="mean")
    clone = augment.Augment.from_config(layer.get_config())
    assert clone.policies == ("specaugment",)
    assert (clone.sample_rate, clone.seed, clone.time_width, clone.fill) == (16000, 7, 5, "mean")
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment.Augment(("noise",), RATE)


def test_augment_trains_inside_a_compiled_model():
    image_in = keras.Input((128, 20, 3), name="image")
    flag_in = keras.Input((), name="flag")
    x = augment.Augment(("paper", "specaugment"), RATE, seed=0, name="augment")([image_in, flag_in])
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(2)(x)
    model = keras.Model([image_in, flag_in], logits)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images = random_images(batch=4, frames=20)
    flags = np.array([0, 1, 0, 1], "float32")
    model.fit([images, flags], np.array([0, 1, 0, 1]), batch_size=4, epochs=1, verbose=0)
    np.testing.assert_array_equal(
        model.get_layer("augment")([images, flags], training=False), images
    )


def test_paper_policy_compiles_with_xla():
    layer = augment.Augment(("paper", "specaugment"), RATE, seed=0)
    run = tf.function(lambda x, f: layer([x, f], training=True), jit_compile=True)
    images = random_images(batch=2, frames=10)
    out = run(images, tf.constant([1.0, 0.0])).numpy()
    np.testing.assert_array_equal(out[1], images[1])


def waveform_dataset(num_batches=4, batch=8):
    # Waveform = one-hot of its label, so a mixed waveform must equal its soft label.
    labels = np.tile(np.arange(batch), num_batches)
    waveforms = np.eye(batch, dtype="float32")[labels]
    flags = (np.arange(batch * num_batches) % 3 == 0).astype("float32")
    return tf.data.Dataset.from_tensor_slices(((waveforms, flags), labels)).batch(batch)


def test_mixup_soft_labels_follow_the_waveform_mix():
    source = list(waveform_dataset().as_numpy_iterator())
    mixed = list(augment.mixup(waveform_dataset(), num_classes=8, seed=0).as_numpy_iterator())
    assert len(mixed) == len(source)
    coefficients = []
    for ((_, flag), label), ((mixed_wave, mixed_flag), soft) in zip(source, mixed):
        assert soft.shape == (8, 8) and soft.dtype == np.float32
        np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
        assert (soft >= 0).all() and (soft <= 1).all()
        np.testing.assert_allclose(soft, mixed_wave, atol=1e-6)
        for i in range(8):
            partners = [j for j in range(8) if j != label[i] and soft[i, j] > 0]
            if partners:
                (j,) = partners
                coefficients.append(soft[i, label[i]])
                assert mixed_flag[i] == max(flag[i], flag[j])
            else:  # unmixed, or the partner's weight rounds to 0
                assert mixed_flag[i] >= flag[i]
    assert any(0.05 < c < 0.95 for c in coefficients)  # Beta(0.2, 0.2) draws


def test_mixup_one_example_exactly():
    (_, flag), label = next(iter(waveform_dataset()))
    rng_waveform = np.random.default_rng(1).standard_normal((8, 30)).astype("float32")
    dataset = tf.data.Dataset.from_tensors(((tf.constant(rng_waveform), flag), label))
    (mixed_wave, mixed_flag), soft = next(iter(augment.mixup(dataset, 8, seed=0)))
    mixed_wave, soft = mixed_wave.numpy(), soft.numpy()
    # Example i carries class i: its soft label names the example mixed into it.
    i = next(i for i in range(8) if 0.05 < soft[i, i] < 0.95)
    j = int(np.argmax(np.where(np.arange(8) == i, -1, soft[i])))
    lam = soft[i, i]
    assert soft[i, j] == pytest.approx(1 - lam, abs=1e-6)
    np.testing.assert_allclose(
        mixed_wave[i], lam * rng_waveform[i] + (1 - lam) * rng_waveform[j], atol=1e-5
    )
    assert mixed_flag.numpy()[i] == max(flag.numpy()[i], flag.numpy()[j])


def test_mixup_is_deterministic_for_a_seed():
    def run(seed):
        return [
            (w, f, y)
            for (w, f), y in augment.mixup(waveform_dataset(), 8, seed=seed).as_numpy_iterator()
        ]

    first, again, other = run(0), run(0), run(1)
    for a, b in zip(first, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(a[2], b[2]) for a, b in zip(first, other))
