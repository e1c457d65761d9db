"""The paper's 3-channel multi-resolution log-mel "image", built from Keras layers.

Palanisamy, Singhania and Yao (2020) compute three log-mel spectrograms of a clip
with windows of 25, 50 and 100 ms and hops of 10, 25 and 50 ms (FFT length 100 ms,
128 mel bands), resize each to 128 x 250 time frames and stack them like the
colour channels of an image. Here the same computation is the first part of the
model, made only of Keras built-in layers, so it runs on whatever device runs the
model and a saved model rebuilds without this package.

Every layer computes in float32, whatever the global dtype policy (mixed precision
runs only the backbone in float16/bfloat16): dB values near 80 would keep only two
or three significant digits in half precision.

Differences from the reference librosa code, all inside the model:
- mel filters follow the HTK mel scale of `keras.layers.MelSpectrogram`
  (`librosa.mel_frequencies(htk=True)` gives its band centres); librosa's
  default is the Slaney scale;
- the log is `10 * log10(max(power, 1e-6))`, a fixed multiple of the paper's
  `ln(power + 1e-6)` away from the floor; per-channel normalisation follows, so
  the scale does not matter;
- frames are centred with reflect padding (librosa 0.11 pads with zeros), which
  only touches the first and last frame or two.
"""

import keras
import numpy as np

from keras_audio_cnn.errors import UserError

WINDOWS_MS = (25, 50, 100)
HOPS_MS = (10, 25, 50)
FFT_MS = 100
NUM_MEL_BINS = 128
# 250 frames for a 5 s clip: the paper's image width, kept per second of audio so
# longer clips (30 s of GTZAN: 1500 frames) get proportionally wider images.
FRAMES_PER_SECOND = 50
# Clips shorter than 1.5 s are stretched to this many frames, the smallest width
# every keras.applications backbone accepts (InceptionV3 needs 75).
MIN_FRAMES = 75
MIN_POWER = 1e-6
# `MelSpectrogram` clips to `max - top_db` over the whole batch, which would make
# one clip's features depend on the rest of its batch. Power is bounded below by
# MIN_POWER (-60 dB) and above by the clip's energy (< +80 dB for |x| <= 1 and a
# 4410-point FFT), so this value never clips and each clip stands alone.
TOP_DB = 1000.0
# The name of the layer whose output is the image (the frontend's last layer).
IMAGE_LAYER = "logmel_image"
# A layer switched by `compute_per_clip` carries this attribute.
_PER_CLIP = "_per_clip_kernel"


class ClipSettingsError(UserError):
    """A sample rate or clip length the frontend cannot compute an image for."""


def _samples(milliseconds, sample_rate):
    # The reference rounds half to even: 25 ms at 44.1 kHz is 1102 samples.
    return int(round(milliseconds * sample_rate / 1000))


def check_clip(sample_rate, num_samples):
    """Raises `ClipSettingsError` unless the frontend works for these settings.

    Every window and hop must be at least one sample (sample rates above 50 Hz),
    and a clip must be longer than half the FFT (50 ms): `keras.ops.stft` centres
    frames by reflect-padding `fft_length // 2` samples at each end, which needs
    more samples than that to reflect.
    """
    if not sample_rate > 0:
        raise ClipSettingsError(f"the sample rate must be positive: got {sample_rate!r}")
    if min(_samples(ms, sample_rate) for ms in WINDOWS_MS + HOPS_MS) < 1:
        raise ClipSettingsError(
            f"a sample rate of {sample_rate} Hz gives a window or hop of 0 samples "
            f"(windows {WINDOWS_MS} ms, hops {HOPS_MS} ms); use a rate above 50 Hz"
        )
    if int(num_samples) != num_samples:
        raise ClipSettingsError(
            f"a clip length must be a whole number of samples: got {num_samples!r}"
        )
    half_fft = fft_length(sample_rate) // 2
    if num_samples <= half_fft:
        raise ClipSettingsError(
            f"clips of {num_samples} samples at {sample_rate} Hz are too short for the "
            f"log-mel frontend: they need more than {half_fft} samples (half the "
            f"{FFT_MS} ms FFT, reflected at each end to centre the frames)"
        )


def fft_length(sample_rate):
    """The FFT length, in samples, of every channel: `FFT_MS` rounded."""
    return _samples(FFT_MS, sample_rate)


def spectrogram_frames(num_samples, fft_length, hop):
    """The number of frames `keras.ops.stft(..., center=True)` really gives.

    It pads `fft_length // 2` samples at each end and takes a window of
    `fft_length` samples every `hop` samples: `1 + num_samples // hop` frames for
    an even FFT length, `1 + (num_samples - 1) // hop` for an odd one.
    (`keras.layers.MelSpectrogram.compute_output_shape` says
    `(num_samples + hop + 1) // hop`, one or two more for some lengths.)
    """
    return 1 + (num_samples + 2 * (fft_length // 2) - fft_length) // hop


def channel_settings(sample_rate):
    """`(name, window, hop)` of each image channel, window and hop in samples."""
    return [
        (f"logmel_{window_ms}ms", _samples(window_ms, sample_rate), _samples(hop_ms, sample_rate))
        for window_ms, hop_ms in zip(WINDOWS_MS, HOPS_MS)
    ]


def image_shape(sample_rate, num_samples):
    """The (mel bands, time frames, channels) shape of the spectrogram image.

    Raises `ClipSettingsError` for settings the frontend cannot compute (see
    `check_clip`). Clips shorter than 1.5 s are stretched to `MIN_FRAMES` frames.
    """
    check_clip(sample_rate, num_samples)
    frames = max(MIN_FRAMES, int(round(num_samples / sample_rate * FRAMES_PER_SECOND)))
    return (NUM_MEL_BINS, frames, len(WINDOWS_MS))


def resize_matrix(input_frames, output_frames):
    """The `[input_frames, output_frames]` matrix of antialiased bilinear resizing.

    `keras.layers.Resizing(antialias=True)` runs TensorFlow's ScaleAndTranslate op,
    which has no XLA kernel (and TensorFlow registers only a CPU kernel for it), so
    a model using it cannot be compiled with `jit_compile=True`. Resizing along time is linear, so it is this
    fixed matrix, applied by a non-trainable `Dense` layer: the same values (resizing
    the identity image gives the matrix), on every device and under XLA.
    """
    identity = np.eye(input_frames, dtype="float32")[None, :, :, None]
    resized = keras.ops.image.resize(
        identity, (output_frames, input_frames), interpolation="bilinear", antialias=True
    )
    return np.transpose(keras.ops.convert_to_numpy(resized)[0, :, :, 0])


def mel_spectrogram_layer(sample_rate, window, hop, name=None):
    """The `keras.layers.MelSpectrogram` of one channel (window and hop in samples)."""
    return keras.layers.MelSpectrogram(
        fft_length=fft_length(sample_rate),
        sequence_stride=hop,
        sequence_length=window,
        window="hann",
        sampling_rate=sample_rate,
        num_mel_bins=NUM_MEL_BINS,
        min_freq=0.0,
        max_freq=sample_rate / 2,
        power_to_db=True,
        top_db=TOP_DB,
        mag_exp=2.0,
        min_power=MIN_POWER,
        ref_power=1.0,
        name=name,
        dtype="float32",
    )


def compute_per_clip(layer):
    """Makes a `MelSpectrogram` layer compute its batch one clip at a time, on a CPU.

    A batch's STFT intermediates (frames of `fft_length` samples, complex spectra,
    power, about 9 MB a channel for one 5 s 44.1 kHz clip) do not fit in a CPU's
    caches, so the layer's elementwise ops and its mel matrix product stream every
    intermediate through memory; one clip at a time they stay in cache (the
    frontend benchmark measures the difference). Each clip is computed by
    `_clip_kernel`, the layer's own computation in fewer passes over memory, so the
    values are the layer's (to float32 rounding); its `top_db` floor is taken per
    clip instead of per batch, which makes no difference for this frontend's
    `TOP_DB`, which never clips. The kernel is swapped on the layer object only,
    like `fused_batch_norm.use_fused_kernels`: the layer keeps its class and config,
    and a saved model is unchanged. Where TensorFlow sees a GPU, or on another Keras
    backend, nothing changes (a GPU wants the whole batch at once).

    Returns whether the layer was switched.
    """
    import tensorflow as tf

    if (keras.backend.backend() != "tensorflow" or getattr(layer, _PER_CLIP, False)
            or tf.config.list_physical_devices("GPU")):
        return False
    keras_call = layer.call
    kernel = _clip_kernel(layer) or (lambda clip: keras_call(clip[None])[0])

    def call(inputs):
        inputs = tf.convert_to_tensor(inputs)
        return tf.map_fn(kernel, inputs, parallel_iterations=1,
                         fn_output_signature=tf.dtypes.as_dtype(layer.compute_dtype))

    layer.call = call
    setattr(layer, _PER_CLIP, True)
    return True


def use_per_clip_kernels(model):
    """`compute_per_clip` on every `MelSpectrogram` layer of `model` (e.g. one loaded
    from a `.keras` file, whose layers compute whole batches). Returns how many it
    switched (none on a GPU, or when they were switched before)."""
    return sum(compute_per_clip(layer) for layer in model.layers
               if isinstance(layer, keras.layers.MelSpectrogram))


# Mel bands per matrix product in `_clip_kernel`.
_BANDS_PER_PRODUCT = 16


def _clip_kernel(layer):
    """One clip `[num_samples]` -> `[bands, frames]`, the values of `layer`'s call.

    `MelSpectrogram` frames the padded clip `fft_length` samples at a time, most of
    them to be multiplied by the zeros around a shorter window; takes the magnitude
    with a square root, then squares it; and multiplies by the whole mel matrix, most
    of whose entries are zero (each band is a triangle over a few FFT bins). Here the
    frames are only the window's samples, padded with zeros; the power is the squared
    real and imaginary parts; and each group of bands multiplies only the FFT bins
    under it. Each frame given to the FFT holds Keras's values at Keras's places, so
    the spectra are the same. None for settings other than this frontend's (Hann
    window, power, dB, float32): those keep Keras's computation.
    """
    import tensorflow as tf

    if (layer.window != "hann" or layer.mag_exp != 2.0 or not layer.power_to_db
            or layer.compute_dtype != "float32"):
        return None
    fft, window, hop = layer.fft_length, layer.sequence_length, layer.sequence_stride
    offset = (fft - window) // 2
    # Frames a whole number of hops long: `tf.signal.frame` then copies hop-long
    # blocks instead of single samples (1102 and 441 have no common factor). The
    # samples past the window are multiplied by zeros.
    length = -(-window // hop) * hop
    past_end = max(0, offset + length - fft)  # zeros appended so the last frame fits
    hann = tf.pad(tf.signal.hann_window(window, periodic=True), [[0, length - window]])
    kept = min(length, fft - offset)  # the windowed samples, then zeros: fft samples a frame
    matrix = keras.ops.convert_to_numpy(layer.linear_to_mel_weight_matrix(
        num_mel_bins=layer.num_mel_bins, num_spectrogram_bins=fft // 2 + 1,
        sampling_rate=layer.sampling_rate, lower_edge_hertz=layer.min_freq,
        upper_edge_hertz=layer.max_freq))
    products = []
    for first in range(0, matrix.shape[1], _BANDS_PER_PRODUCT):
        bands = matrix[:, first:first + _BANDS_PER_PRODUCT]
        rows = np.flatnonzero(bands.any(axis=1))
        low, high = (rows[0], rows[-1] + 1) if len(rows) else (0, 0)
        products.append((int(low), int(high), tf.constant(bands[low:high])))
    ref_db = 10.0 * np.log10(max(abs(layer.ref_power), layer.min_power))

    def kernel(clip):
        padded = tf.pad(clip, [[fft // 2, fft // 2]], mode="REFLECT")
        count = 1 + (tf.shape(padded)[0] - fft) // hop  # Keras's frames (`spectrogram_frames`)
        if past_end:
            padded = tf.pad(padded, [[0, past_end]])
        windowed = tf.signal.frame(padded[offset:offset + (count - 1) * hop + length],
                                   length, hop) * hann
        if kept < length:
            windowed = windowed[:, :kept]
        # The frame Keras transforms, the same values at the same places.
        spectrum = tf.signal.rfft(tf.pad(windowed, [[0, 0], [offset, fft - offset - kept]]))
        power = tf.square(tf.math.real(spectrum)) + tf.square(tf.math.imag(spectrum))
        mel = tf.concat([tf.matmul(power[:, low:high], bands) for low, high, bands in products],
                        axis=-1)
        db = 10.0 * (tf.math.log(tf.maximum(mel, layer.min_power)) / np.log(10.0)) - ref_db
        db = tf.maximum(db, tf.reduce_max(db) - layer.top_db)
        return tf.transpose(db)

    return kernel


def log_mel_image(waveform, sample_rate, num_samples):
    """Applies the frontend layers to a `[batch, num_samples]` waveform tensor.

    Args:
        waveform: symbolic or eager float32 tensor `[batch, num_samples]` in [-1, 1].
        sample_rate: the waveform's sample rate in Hz.
        num_samples: the clip length in samples.

    Returns:
        A `[batch, 128, frames, 3]` tensor: one log-mel spectrogram per channel,
        channel i computed with window `WINDOWS_MS[i]` and hop `HOPS_MS[i]`. On a
        CPU the spectrogram layers compute one clip at a time (`compute_per_clip`).
    """
    bands, frames, _ = image_shape(sample_rate, num_samples)
    fft = fft_length(sample_rate)
    unsized = None
    channels = []
    for name, window, hop in channel_settings(sample_rate):
        mel = mel_spectrogram_layer(sample_rate, window, hop, name)
        compute_per_clip(mel)
        input_frames = spectrogram_frames(num_samples, fft, hop)
        if mel.compute_output_shape(waveform.shape)[-1] == input_frames:
            spectrogram = mel(waveform)  # [batch, bands, time]
        else:
            # For these lengths the layer's symbolic time axis is longer than what
            # it computes; give it a waveform of unknown length instead, so its
            # symbolic output has an unknown time axis that the resizing fixes.
            # (Models of the other lengths stay as they always were.)
            if unsized is None:
                unsized = keras.layers.Reshape(
                    (None,), name="waveform_any_length", dtype="float32"
                )(waveform)
            spectrogram = mel(unsized)
        resize = keras.layers.Dense(
            frames, use_bias=False, trainable=False, name=f"{name}_resized", dtype="float32"
        )
        resize.build((None, bands, input_frames))
        resize.kernel.assign(resize_matrix(input_frames, frames))
        spectrogram = resize(spectrogram)
        spectrogram = keras.layers.Reshape(
            (bands, frames, 1), name=f"{name}_image", dtype="float32"
        )(spectrogram)
        channels.append(spectrogram)
    return keras.layers.Concatenate(axis=-1, name=IMAGE_LAYER, dtype="float32")(channels)


def build_frontend(sample_rate, num_samples):
    """A model from waveforms `[batch, num_samples]` to log-mel images."""
    check_clip(sample_rate, num_samples)
    waveform = keras.Input(shape=(num_samples,), name="waveform")
    image = log_mel_image(waveform, sample_rate, num_samples)
    return keras.Model(waveform, image, name="frontend")
