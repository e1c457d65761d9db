"""Pitch shift, time stretch and SpecAugment masks of log-mel images, in TensorFlow.

The image operations behind `augment.Augment`. Palanisamy, Singhania and Yao
(2020) pitch-shift and time-stretch the waveform with librosa, once per example
on the CPU; here both act on the log-mel image on the training device.

Why the image and not the waveform: shifting the pitch or stretching the time
of a waveform needs a phase vocoder (an STFT, phase unwrapping, an inverse STFT)
plus resampling, with a different rate for each example; on the log-mel image
both are a per-example gather along one axis and a linear interpolation, a few
cheap ops whose cost does not depend on the clip's sample rate.

The price is an approximation. A pitch shift by `s` semitones multiplies every
frequency by `2 ** (s / 12)`: here each output band reads the input band whose
centre frequency is that much lower, but the width of the mel filters is not
rescaled (a band of the shifted image sums the power a differently-wide filter
would have seen), harmonics that fall between bands are smeared by the
interpolation, and nothing is invented above Nyquist or below the lowest band
(those bands get the floor value). Time stretching a magnitude image keeps each
frame's spectrum but, unlike a phase vocoder, does not resynthesise phase;
the frontend's channels use different windows and are all stretched the same
way, which is what a stretched waveform would give to within a window length.

Every out-of-range read is filled with `FLOOR_DB`, the value the frontend gives
to silence (`10 * log10(frontend.MIN_POWER)` = -60 dB), or with the `floor_db` of
another frontend (PANNs': -100 dB). The pitch shift reads the paper's HTK mel scale,
or any frontend's bands given by their centre frequencies (`band_hz`).
"""

import math

import keras
import tensorflow as tf

from keras_audio_cnn import frontend

# What the frontend outputs for digital silence: 10 * log10(1e-6) = -60 dB.
FLOOR_DB = 10.0 * math.log10(frontend.MIN_POWER)

FILLS = ("floor", "mean")

# The paper's augmentation ranges.
PAPER_SEMITONES = (-2, 2)  # integers, both ends included
PAPER_RATES = (0.9, 1.2)  # uniform, upper end excluded

# SpecAugment defaults, sized for the frontend's 128 bands and 50 frames per
# second: each frequency mask is up to 16 bands (1/8 of the bands), each time
# mask up to 25 frames (0.5 s; 1/10 of a 5 s ESC-50 clip).
TIME_MASKS, TIME_WIDTH = 2, 25
FREQ_MASKS, FREQ_WIDTH = 2, 16

# Fractional indices this close to an integer are snapped to it, so a zero
# shift or a rate of 1 returns the input exactly.
_SNAP = 1e-6


def _hz_to_mel(hz):
    return 2595.0 * tf.math.log(1.0 + hz / 700.0) / math.log(10.0)


def _mel_to_hz(mel):
    return 700.0 * (tf.pow(tf.constant(10.0, mel.dtype), mel / 2595.0) - 1.0)


def _resample(images, positions, axis, floor_db=FLOOR_DB):
    """Reads `images` at fractional `positions` along `axis` (1 or 2).

    Args:
        images: `[batch, bands, frames, channels]`.
        positions: float64 `[batch, n]`: for each example, the fractional index
            of the input that each of `n` outputs reads.
        axis: 1 (mel bands) or 2 (time frames).

    Returns:
        `images` with `axis` resized to `n`: linear interpolation between the
        two nearest inputs; outside the input the missing neighbour is
        `floor_db`, so reads more than one step outside are `floor_db`.
    """
    size = tf.shape(images, out_type=tf.int64)[axis]
    padding = [[0, 0]] * 4
    padding[axis] = [1, 1]
    padded = tf.pad(images, padding, constant_values=floor_db)

    rounded = tf.round(positions)
    positions = tf.where(tf.abs(positions - rounded) < _SNAP, rounded, positions)
    # Index into `padded`, whose entries 0 and size + 1 are the floor.
    positions = tf.clip_by_value(positions + 1.0, 0.0, tf.cast(size + 1, tf.float64))
    lower = tf.minimum(tf.cast(tf.floor(positions), tf.int64), size)
    weight = tf.cast(positions - tf.cast(lower, tf.float64), images.dtype)

    below = tf.gather(padded, lower, axis=axis, batch_dims=1)
    above = tf.gather(padded, lower + 1, axis=axis, batch_dims=1)
    weight = weight[:, :, None, None] if axis == 1 else weight[:, None, :, None]
    return below + weight * (above - below)


def pitch_shift(images, semitones, sample_rate, band_hz=None, floor_db=FLOOR_DB):
    """Shifts the content of log-mel images up or down in pitch.

    Each output band, centred at frequency `f`, reads the input at
    `f / 2 ** (semitones / 12)`, converted to a fractional band index on the
    frontend's mel scale (HTK, `mel = 2595 * log10(1 + f / 700)`; 128 band
    centres at the inner points of `linspace(mel(0), mel(sample_rate / 2), 130)`)
    and linearly interpolated. Reads past the top band (downward shifts) give
    `floor_db`; below the first band the image fades to `floor_db` at 0 Hz.
    With `band_hz` (another frontend's band centres, increasing), the fractional
    index is linear in frequency between neighbouring centres, and the image fades
    to `floor_db` within a band's distance below the first band. Filter widths are
    not rescaled (see the module docstring).

    Args:
        images: float `[batch, bands, frames, channels]` log-mel images in dB,
            from `frontend.log_mel_image` (any number of bands, any frames).
        semitones: float `[batch]`: each example's shift; positive is up.
            Fractional values are allowed.
        sample_rate: the sample rate of the audio the images came from, in Hz.
        band_hz: the centre frequency of each band, or None for the paper's HTK
            bands.
        floor_db: the image's value for silence.

    Returns:
        The shifted images, same shape and dtype. A shift of 0 returns the
        input exactly. Pure TensorFlow ops: works in graph mode and under XLA.
    """
    images = tf.convert_to_tensor(images)
    semitones = tf.cast(tf.reshape(semitones, [-1, 1]), tf.float64)
    factor = tf.pow(tf.constant(2.0, tf.float64), -semitones / 12.0)
    if band_hz is None:
        bands = tf.shape(images)[1]
        top = _hz_to_mel(tf.constant(sample_rate / 2.0, tf.float64))
        step = top / tf.cast(bands + 1, tf.float64)
        centres = _mel_to_hz(step * tf.cast(tf.range(1, bands + 1), tf.float64))
        positions = _hz_to_mel(centres[None, :] * factor) / step - 1.0
    else:
        centres = tf.constant(band_hz, tf.float64)
        source = centres[None, :] * factor  # [batch, bands]
        ordered = tf.broadcast_to(centres, tf.shape(source))
        upper = tf.clip_by_value(tf.searchsorted(ordered, source, side="right"), 1,
                                 len(band_hz) - 1)
        low, high = tf.gather(centres, upper - 1), tf.gather(centres, upper)
        positions = tf.cast(upper - 1, tf.float64) + (source - low) / (high - low)
    return _resample(images, positions, axis=1, floor_db=floor_db)


def time_stretch(images, rate, floor_db=FLOOR_DB):
    """Plays the content of each image `rate` times faster, keeping its width.

    Output frame `t` reads input frame `t * rate`, linearly interpolated. With
    `rate > 1` the content ends early and the frames past the end of the input
    are `floor_db` (the last one within a frame of the end fades to it); with
    `rate < 1` the end of the input is cut off.

    Args:
        images: float `[batch, bands, frames, channels]` log-mel images in dB.
        rate: float `[batch]`: each example's speed-up factor (> 0).
        floor_db: the image's value for silence.

    Returns:
        The stretched images, same shape and dtype. A rate of 1 returns the
        input exactly.
    """
    images = tf.convert_to_tensor(images)
    frames = tf.cast(tf.range(tf.shape(images)[2]), tf.float64)
    rate = tf.cast(tf.reshape(rate, [-1, 1]), tf.float64)
    return _resample(images, frames[None, :] * rate, axis=2, floor_db=floor_db)


def spec_augment(
    images,
    seed=None,
    time_masks=TIME_MASKS,
    time_width=TIME_WIDTH,
    freq_masks=FREQ_MASKS,
    freq_width=FREQ_WIDTH,
    fill="floor",
    floor_db=FLOOR_DB,
):
    """SpecAugment time and frequency masks (Park et al., 2019), per example.

    Each example gets `time_masks` masks of `w ~ U{0, ..., time_width}`
    consecutive frames and `freq_masks` masks of `w ~ U{0, ..., freq_width}`
    consecutive bands, each starting uniformly where it fits; masks span every
    channel and may overlap. No time warping.

    The default fill is `FLOOR_DB`, silence: the value the frontend gives to
    digital silence (which ESC-50 pads its short clips with) and the value the
    pitch shift and time stretch fill with, so masked cells look like audio
    the model sees anyway and do not depend on the dataset's statistics.
    `fill="mean"` instead uses each example's own per-channel mean, the
    original paper's choice (it masked normalised features with 0).

    Args:
        images: float `[batch, bands, frames, channels]` log-mel images in dB.
        seed: a `keras.random.SeedGenerator` (fresh masks on every call), an
            int (the same masks on every call) or None (Keras's global seed).
        time_masks, time_width: number of time masks and largest width in frames.
        freq_masks, freq_width: number of frequency masks and largest width in
            bands.
        fill: "floor" (`floor_db`) or "mean" (per example and channel).
        floor_db: the image's value for silence (`FLOOR_DB` for the paper's frontend).

    Returns:
        The masked images, same shape and dtype.
    """
    if fill not in FILLS:
        raise ValueError(f"unknown fill {fill!r}; choose one of: {', '.join(FILLS)}")
    images = tf.convert_to_tensor(images)
    shape = tf.shape(images)
    batch, bands, frames = shape[0], shape[1], shape[2]
    count = time_masks + freq_masks
    if count == 0:
        return images
    # One draw for everything, so an int seed does not repeat itself across axes.
    draws = keras.random.uniform(tf.stack([batch, count, 2]), seed=seed, dtype="float32")
    draws = tf.cast(draws, tf.float64)
    sizes = tf.cast(
        tf.concat([tf.fill([time_masks], frames), tf.fill([freq_masks], bands)], 0),
        tf.float64,
    )
    widths = tf.constant([time_width] * time_masks + [freq_width] * freq_masks, tf.float64)
    widths = tf.minimum(widths, sizes)
    width = tf.floor(draws[..., 0] * (widths + 1.0))  # [batch, count]
    start = tf.floor(draws[..., 1] * (sizes - width + 1.0))
    end = start + width

    def covered(first, last, size):  # [batch, masks] -> [batch, size]
        index = tf.cast(tf.range(size), tf.float64)[None, None, :]
        inside = (index >= first[..., None]) & (index < last[..., None])
        return tf.reduce_any(inside, axis=1)

    in_time = covered(start[:, :time_masks], end[:, :time_masks], frames)
    in_freq = covered(start[:, time_masks:], end[:, time_masks:], bands)
    masked = in_freq[:, :, None, None] | in_time[:, None, :, None]
    if fill == "floor":
        value = tf.constant(floor_db, images.dtype)
    else:
        value = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    return tf.where(masked, value, images)
