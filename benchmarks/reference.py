"""The reference implementation's spectrogram image, per clip with librosa and PIL.

Palanisamy et al.'s code computes each clip's three mel spectrograms on the CPU
(torchaudio in preprocessing, librosa for the augmented training copies), takes
`log(power + 1e-6)` and resizes each to 128 x 250 with PIL's bilinear filter.
This module does the same with librosa, using the frontend's settings (HTK mel
bands, no filter normalisation, reflect padding, the frontend's dB log), so the
two can be compared value for value.
"""

import librosa
import numpy as np
from PIL import Image

from keras_audio_cnn import frontend


def log_mel_channels(clip, sample_rate):
    """The three log-mel spectrograms `[128, frames_i]` in dB, before resizing."""
    samples = lambda ms: int(round(ms * sample_rate / 1000))  # noqa: E731
    channels = []
    for window_ms, hop_ms in zip(frontend.WINDOWS_MS, frontend.HOPS_MS):
        power = librosa.feature.melspectrogram(
            y=clip, sr=sample_rate, n_fft=samples(frontend.FFT_MS),
            hop_length=samples(hop_ms), win_length=samples(window_ms), window="hann",
            center=True, pad_mode="reflect", n_mels=frontend.NUM_MEL_BINS, fmin=0.0,
            fmax=sample_rate / 2, htk=True, norm=None,
        )
        channels.append(10 * np.log10(np.maximum(power, frontend.MIN_POWER)))
    return channels


def log_mel_image(clip, sample_rate):
    """The `[128, frames, 3]` image: each channel resized with PIL's bilinear filter."""
    bands, frames, _ = frontend.image_shape(sample_rate, len(clip))
    resized = [
        np.asarray(Image.fromarray(channel.astype(np.float32)).resize((frames, bands),
                                                                    Image.BILINEAR))
        for channel in log_mel_channels(clip, sample_rate)
    ]
    return np.stack(resized, axis=-1)


def augmented_log_mel_image(clip, sample_rate, rng):
    """The reference's training copy: random pitch shift and time stretch, then the image.

    Pitch shift of -2..2 semitones and stretch rate 0.9..1.2, drawn per clip, as
    the paper describes; the stretched clip is cut or zero-padded back to length.
    """
    steps = int(rng.integers(-2, 3))
    rate = float(rng.uniform(0.9, 1.2))
    shifted = librosa.effects.pitch_shift(clip, sr=sample_rate, n_steps=steps)
    stretched = librosa.effects.time_stretch(shifted, rate=rate)
    stretched = librosa.util.fix_length(stretched, size=len(clip))
    return log_mel_image(stretched.astype(np.float32), sample_rate)
