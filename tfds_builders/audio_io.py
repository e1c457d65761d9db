"""Decoding audio files into fixed-length int16 clips.

A light module (numpy, soundfile and librosa only, no TensorFlow) shared by the
TFDS builders, which store every clip as the int16 waveform `load_clip` returns.

Every problem a user must fix in their data (an unreadable file, a missing file,
a metadata file that does not match) is an `AudioDataError` whose message is one
line: what is wrong, where (the exact path), and what to do about it.
"""

import os

import numpy as np
import soundfile as sf

# librosa's high-quality soxr resampler (its default `res_type`); soxr ships with
# librosa >= 0.10 as a wheel, so this needs nothing outside PyPI.
RESAMPLE_TYPE = "soxr_hq"

# Clips have at most this many seconds where a dataset has no fixed clip length:
# an audio folder without `clip_seconds`, or a TFDS catalog dataset with clips of
# varying length, takes its longest clip's length, capped at this.
MAX_CLIP_SECONDS = 10.0

_INT16_SCALE = 32768.0


class AudioDataError(ValueError):
    """A data problem the user must fix; the message is a single line."""

    def __init__(self, message):
        super().__init__(one_line(message))


def one_line(text):
    """`text` (an exception or a string) with its line breaks folded into spaces."""
    return " ".join(str(text).split())


def _source_name(path_or_fileobj):
    if isinstance(path_or_fileobj, (str, os.PathLike)):
        return os.fspath(path_or_fileobj)
    name = getattr(path_or_fileobj, "name", None)
    return name if isinstance(name, str) else "<in-memory audio file>"


def load_clip(path_or_fileobj, sample_rate: int, num_samples: int) -> np.ndarray:
    """Decodes an audio file into a mono int16 clip of exactly `num_samples`.

    Any format libsndfile reads is accepted (WAV with 8-bit unsigned, 16/24/32-bit
    integer or 32/64-bit float samples, WAVE_FORMAT_EXTENSIBLE, FLAC, OGG, ...)
    with any number of channels. Channels are averaged to mono; a file at another
    rate is resampled to `sample_rate` with `librosa.resample` (res_type
    "soxr_hq"); the clip is zero-padded at the end or trimmed to `num_samples`;
    samples are scaled by 32768, rounded and clipped to [-32768, 32767]. A 16-bit
    mono file at `sample_rate` therefore comes back bit-exactly.

    Args:
      path_or_fileobj: a path, or a seekable binary file object (its `name`, if
        any, is used in error messages).
      sample_rate: the rate of the returned clip, in Hz.
      num_samples: the length of the returned clip.

    Returns:
      `np.ndarray` of dtype int16 and shape `[num_samples]`.

    Raises:
      AudioDataError: the file cannot be decoded, is empty or holds non-finite
        samples.
    """
    if int(sample_rate) <= 0 or int(num_samples) <= 0:
        raise ValueError(
            f"sample_rate and num_samples must be positive, got {sample_rate}, {num_samples}"
        )
    name = _source_name(path_or_fileobj)
    try:
        # float64 holds every PCM width exactly: a 16-bit sample s reads as s / 32768.
        data, file_rate = sf.read(path_or_fileobj, dtype="float64", always_2d=True)
    except Exception as err:  # libsndfile reports every decoding problem its own way.
        reason = getattr(err, "error_string", None) or err  # LibsndfileError's own words.
        raise AudioDataError(
            f"cannot decode audio file {name}: {one_line(reason)}; "
            "replace it with an intact copy from the original dataset"
        ) from err
    if data.shape[0] == 0:
        raise AudioDataError(
            f"audio file {name} holds no samples; "
            "replace it with an intact copy from the original dataset"
        )
    if not np.all(np.isfinite(data)):
        raise AudioDataError(
            f"audio file {name} holds NaN or infinite samples; "
            "replace it with an intact copy from the original dataset"
        )

    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if file_rate != sample_rate:
        mono = _resample(mono, file_rate, sample_rate)

    clip = np.zeros(int(num_samples), dtype=np.float64)
    length = min(len(mono), int(num_samples))
    clip[:length] = mono[:length]
    return np.clip(np.round(clip * _INT16_SCALE), -32768, 32767).astype(np.int16)


def _resample(signal, orig_sr, target_sr):
    """Resamples a 1-D float signal with librosa's soxr_hq resampler."""
    import librosa  # Imported here: librosa loads numba and scipy, slow to import.

    return librosa.resample(
        np.asarray(signal, dtype=np.float64),
        orig_sr=orig_sr,
        target_sr=target_sr,
        res_type=RESAMPLE_TYPE,
    )
