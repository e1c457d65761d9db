"""Training-time augmentation of log-mel images, inside the TensorFlow graph.

Palanisamy, Singhania and Yao (2020) add to every training clip an augmented
copy: a random pitch shift (whole semitones in [-2, 2]) and a random time
stretch (rate in [0.9, 1.2)). Their code does this to the waveform with
librosa, once per example on the CPU. Here it runs on the training device, in
the training model, between the frontend and the normalisation:

    waveform, flag -> frontend -> Augment -> normalization -> backbone ...

The training pipeline emits `((waveform, flag), label)` with `flag` 1.0 for the
augmented copy and 0.0 for the original; the saved inference model is built
from the same layers without `Augment`, so it never contains augmentation.

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
to silence (`10 * log10(frontend.MIN_POWER)` = -60 dB).
"""

import math

import keras
import tensorflow as tf

from keras_audio_cnn import frontend

# What the frontend outputs for digital silence: 10 * log10(1e-6) = -60 dB.
FLOOR_DB = 10.0 * math.log10(frontend.MIN_POWER)

POLICIES = ("paper", "specaugment")
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


def _resample(images, positions, axis):
    """Reads `images` at fractional `positions` along `axis` (1 or 2).

    Args:
        images: `[batch, bands, frames, channels]`.
        positions: float64 `[batch, n]`: for each example, the fractional index
            of the input that each of `n` outputs reads.
        axis: 1 (mel bands) or 2 (time frames).

    Returns:
        `images` with `axis` resized to `n`: linear interpolation between the
        two nearest inputs; outside the input the missing neighbour is
        `FLOOR_DB`, so reads more than one step outside are `FLOOR_DB`.
    """
    size = tf.shape(images, out_type=tf.int64)[axis]
    padding = [[0, 0]] * 4
    padding[axis] = [1, 1]
    padded = tf.pad(images, padding, constant_values=FLOOR_DB)

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


def pitch_shift(images, semitones, sample_rate):
    """Shifts the content of HTK log-mel images up or down in pitch.

    Each output band, centred at frequency `f`, reads the input at
    `f / 2 ** (semitones / 12)`, converted to a fractional band index on the
    frontend's mel scale (HTK, `mel = 2595 * log10(1 + f / 700)`; 128 band
    centres at the inner points of `linspace(mel(0), mel(sample_rate / 2), 130)`)
    and linearly interpolated. Reads past the top band (downward shifts) give
    `FLOOR_DB`; below the first band the image fades to `FLOOR_DB` at 0 Hz.
    Filter widths are not rescaled (see the module docstring).

    Args:
        images: float `[batch, bands, frames, channels]` log-mel images in dB,
            from `frontend.log_mel_image` (any number of bands, any frames).
        semitones: float `[batch]`: each example's shift; positive is up.
            Fractional values are allowed.
        sample_rate: the sample rate of the audio the images came from, in Hz.

    Returns:
        The shifted images, same shape and dtype. A shift of 0 returns the
        input exactly. Pure TensorFlow ops: works in graph mode and under XLA.
    """
    images = tf.convert_to_tensor(images)
    bands = tf.shape(images)[1]
    top = _hz_to_mel(tf.constant(sample_rate / 2.0, tf.float64))
    step = top / tf.cast(bands + 1, tf.float64)
    centres = _mel_to_hz(step * tf.cast(tf.range(1, bands + 1), tf.float64))

    semitones = tf.cast(tf.reshape(semitones, [-1, 1]), tf.float64)
    source = centres[None, :] * tf.pow(tf.constant(2.0, tf.float64), -semitones / 12.0)
    positions = _hz_to_mel(source) / step - 1.0
    return _resample(images, positions, axis=1)


def time_stretch(images, rate):
    """Plays the content of each image `rate` times faster, keeping its width.

    Output frame `t` reads input frame `t * rate`, linearly interpolated. With
    `rate > 1` the content ends early and the frames past the end of the input
    are `FLOOR_DB` (the last one within a frame of the end fades to it); with
    `rate < 1` the end of the input is cut off.

    Args:
        images: float `[batch, bands, frames, channels]` log-mel images in dB.
        rate: float `[batch]`: each example's speed-up factor (> 0).

    Returns:
        The stretched images, same shape and dtype. A rate of 1 returns the
        input exactly.
    """
    images = tf.convert_to_tensor(images)
    frames = tf.cast(tf.range(tf.shape(images)[2]), tf.float64)
    rate = tf.cast(tf.reshape(rate, [-1, 1]), tf.float64)
    return _resample(images, frames[None, :] * rate, axis=2)


def spec_augment(
    images,
    seed=None,
    time_masks=TIME_MASKS,
    time_width=TIME_WIDTH,
    freq_masks=FREQ_MASKS,
    freq_width=FREQ_WIDTH,
    fill="floor",
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
        fill: "floor" (`FLOOR_DB`) or "mean" (per example and channel).

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
        value = tf.constant(FLOOR_DB, images.dtype)
    else:
        value = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    return tf.where(masked, value, images)


@keras.saving.register_keras_serializable(package="keras_audio_cnn")
class Augment(keras.layers.Layer):
    """Augments the flagged examples of a batch of log-mel images in training.

    Called on `[images, flag]`: `images` `[batch, bands, frames, channels]` from
    the frontend, `flag` float `[batch]` (or `[batch, 1]`), 1.0 for the copies to
    augment and 0.0 for the originals. In training, each flagged example gets,
    in order:

    - "paper": a pitch shift by a whole number of semitones drawn uniformly
      from [-2, 2] and a time stretch by a rate drawn uniformly from
      [0.9, 1.2) (Palanisamy et al., 2020), see `pitch_shift`, `time_stretch`;
    - "specaugment": time and frequency masks, see `spec_augment`.

    Unflagged examples (flag <= 0.5), and every example when `training` is not
    True, come out exactly as they came in. Put it in a training-only model
    between the frontend and the normalisation; leave it out of the saved one.

    Args:
        policies: a tuple of names from `POLICIES`; empty means no augmentation.
        sample_rate: sample rate of the audio behind the images, in Hz (sets
            the mel scale for the pitch shift).
        seed: int seed of the layer's `keras.random.SeedGenerator`: the same
            seed gives the same draws, call after call, run to run.
        time_masks, time_width, freq_masks, freq_width, fill: the
            "specaugment" settings, as in `spec_augment`.

    Example:

    ```python
    images = frontend.log_mel_image(waveform, sample_rate, num_samples)
    images = Augment(("paper",), sample_rate, seed=0)([images, flag])
    ```

    Reference: K. Palanisamy, D. Singhania, A. Yao, "Rethinking CNN Models for
    Audio Classification", arXiv:2007.11154, 2020.
    """

    def __init__(
        self,
        policies=("paper",),
        sample_rate=44100,
        seed=None,
        time_masks=TIME_MASKS,
        time_width=TIME_WIDTH,
        freq_masks=FREQ_MASKS,
        freq_width=FREQ_WIDTH,
        fill="floor",
        **kwargs,
    ):
        super().__init__(**kwargs)
        policies = (policies,) if isinstance(policies, str) else tuple(policies)
        unknown = [p for p in policies if p not in POLICIES]
        if unknown:
            raise ValueError(
                f"unknown augmentation policies {unknown}; choose from: {', '.join(POLICIES)}"
            )
        if fill not in FILLS:
            raise ValueError(f"unknown fill {fill!r}; choose one of: {', '.join(FILLS)}")
        self.policies = policies
        self.sample_rate = sample_rate
        self.seed = seed
        self.time_masks = time_masks
        self.time_width = time_width
        self.freq_masks = freq_masks
        self.freq_width = freq_width
        self.fill = fill
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        images, flag = inputs
        if not training or not self.policies:
            return images
        augmented = images
        batch = tf.shape(images)[0]
        if "paper" in self.policies:
            low, high = PAPER_SEMITONES
            semitones = keras.random.randint(
                tf.reshape(batch, [1]), low, high + 1, seed=self.seed_generator
            )
            rate = keras.random.uniform(
                tf.reshape(batch, [1]), *PAPER_RATES, seed=self.seed_generator
            )
            augmented = pitch_shift(augmented, semitones, self.sample_rate)
            augmented = time_stretch(augmented, rate)
        if "specaugment" in self.policies:
            augmented = spec_augment(
                augmented,
                seed=self.seed_generator,
                time_masks=self.time_masks,
                time_width=self.time_width,
                freq_masks=self.freq_masks,
                freq_width=self.freq_width,
                fill=self.fill,
            )
        selected = tf.reshape(tf.cast(flag, tf.float32), [-1, 1, 1, 1]) > 0.5
        return tf.where(selected, augmented, images)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update(
            policies=list(self.policies),
            sample_rate=self.sample_rate,
            seed=self.seed,
            time_masks=self.time_masks,
            time_width=self.time_width,
            freq_masks=self.freq_masks,
            freq_width=self.freq_width,
            fill=self.fill,
        )
        return config


def mixup(dataset, num_classes, alpha=0.2, seed=0):
    """Mixes every batch with a shuffled copy of itself (Zhang et al., 2018).

    For each example `i` of a batch, with `j = perm[i]` a random permutation of
    the batch and `lam_i ~ Beta(alpha, alpha)` (drawn as `g1 / (g1 + g2)`,
    `g1, g2 ~ Gamma(alpha)`):

        waveform_i <- lam_i * waveform_i + (1 - lam_i) * waveform_j
        label_i    <- lam_i * one_hot(label_i) + (1 - lam_i) * one_hot(label_j)
        flag_i     <- max(flag_i, flag_j)

    so a mix containing an augmented copy is augmented (`Augment` then
    transforms the whole mixed waveform's image).

    Draws come from `tf.random.stateless_*` ops seeded by `(seed, batch
    number)`: the same seed gives the same output for the same input. The
    batch number restarts each time the dataset is iterated, so when Keras
    iterates it again every epoch, batch `k` reuses its permutation and
    coefficients (over different examples if the input is reshuffled); to get
    fresh draws every epoch, mix a `.repeat()`ed dataset and pass
    `steps_per_epoch` to `fit`.

    Args:
        dataset: a batched `tf.data.Dataset` of `((waveform, flag), label)`:
            float32 `[batch, num_samples]`, float32 `[batch]` and integer
            `[batch]` class indices.
        num_classes: number of classes of the one-hot labels.
        alpha: the Beta distribution's parameter; small values keep most
            mixes close to one of the two examples.
        seed: int seed.

    Returns:
        A dataset of `((waveform, flag), labels)` with float32 `[batch,
        num_classes]` soft labels summing to 1; train with
        `keras.losses.CategoricalCrossentropy`.
    """

    def mix(index, example):
        (waveform, flag), label = example
        seeds = tf.random.experimental.stateless_split(
            tf.stack([tf.cast(seed, tf.int64), index]), num=3
        )
        batch = tf.shape(label)[0]
        order = tf.argsort(tf.random.stateless_uniform([batch], seed=seeds[0]))
        gamma_1 = tf.random.stateless_gamma([batch], seeds[1], alpha, dtype=tf.float64)
        gamma_2 = tf.random.stateless_gamma([batch], seeds[2], alpha, dtype=tf.float64)
        # Both draws can underflow to 0 for small alpha; lam is then 0.5.
        total = gamma_1 + gamma_2
        lam = tf.where(total > 0, gamma_1 / tf.where(total > 0, total, 1.0), 0.5)
        lam = tf.cast(lam, tf.float32)

        def blend(values):
            values = tf.cast(values, tf.float32)
            weight = tf.reshape(lam, [-1] + [1] * (len(values.shape) - 1))
            return weight * values + (1.0 - weight) * tf.gather(values, order)

        one_hot = tf.one_hot(tf.reshape(label, [-1]), num_classes, dtype=tf.float32)
        flag = tf.cast(flag, tf.float32)
        mixed_flag = tf.maximum(flag, tf.gather(flag, order))
        return (blend(waveform), mixed_flag), blend(one_hot)

    return dataset.enumerate().map(mix, num_parallel_calls=tf.data.AUTOTUNE)
