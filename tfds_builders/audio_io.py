"""Decoding audio files into fixed-length int16 clips.

A light module (numpy, soundfile and librosa only, no TensorFlow) shared by the
TFDS builders, which store every clip as the int16 waveform `load_clip` returns.

Every problem a user must fix in their data (an unreadable file, a missing file,
a metadata file that does not match) is an `AudioDataError` whose message is one
line: what is wrong, where (the exact path), and what to do about it.

A file that decodes but looks damaged is kept, and `load_clip_checked` says why
it is suspect: cut short (its WAV or AU header declares more frames than it
holds: libsndfile then reads what is there without an error, noting
"data : <declared bytes> (should be <bytes present>)" only in its log), shorter
than `MIN_SECONDS`, or all zero.
"""

import os
import struct

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

# A file holding less audio than this is suspect: 25 ms is the shortest window of
# the paper's spectrograms (25, 50 and 100 ms), so a shorter file does not fill a
# single frame of any of them. A 1-sample file is far below it.
MIN_SECONDS = 0.025
# Bytes per sample of the AU encodings libsndfile reads as PCM, by encoding number.
_AU_SAMPLE_BYTES = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8, 27: 1}
_UNKNOWN_SIZE = 0xFFFFFFFF  # The size a streaming writer leaves in a header.


class AudioDataError(ValueError):
    """A data problem the user must fix; the message is a single line."""

    def __init__(self, message):
        super().__init__(one_line(message))


def one_line(text):
    """`text` (an exception or a string) with its line breaks folded into spaces."""
    return " ".join(str(text).split())


def _source_name(path_or_fileobj):
    if isinstance(path_or_fileobj, (str, bytes, os.PathLike)):
        return os.fsdecode(path_or_fileobj)
    name = getattr(path_or_fileobj, "name", None)
    return name if isinstance(name, str) else "<in-memory audio file>"


def sndfile_path(path_or_fileobj):
    """What to give libsndfile (soundfile) to open a file: a path as the bytes the OS
    gave (`os.fsencode`), so that a name that is not UTF-8 (bytes such as \\xff, read
    by Python as surrogates) opens as any other; a file object as it is."""
    if isinstance(path_or_fileobj, (str, bytes, os.PathLike)):
        return os.fsencode(path_or_fileobj)
    return path_or_fileobj


def load_clip(path_or_fileobj, sample_rate: int, num_samples: int) -> np.ndarray:
    """`load_clip_checked` without the check: the clip alone."""
    return load_clip_checked(path_or_fileobj, sample_rate, num_samples)[0]


def load_clip_checked(path_or_fileobj, sample_rate: int, num_samples: int):
    """Decodes an audio file into a mono int16 clip of exactly `num_samples`, and checks it.

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
      `(clip, suspect)`: the clip, an `np.ndarray` of dtype int16 and shape
      `[num_samples]`, and why the file is suspect (one line, see
      `suspect_reason`), or None.

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
        declared = _declared_frames(path_or_fileobj)
        # float64 holds every PCM width exactly: a 16-bit sample s reads as s / 32768.
        data, file_rate = sf.read(sndfile_path(path_or_fileobj), dtype="float64",
                                  always_2d=True)
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

    suspect = suspect_reason(data, file_rate, declared)

    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if file_rate != sample_rate:
        mono = _resample(mono, file_rate, sample_rate)

    clip = np.zeros(int(num_samples), dtype=np.float64)
    length = min(len(mono), int(num_samples))
    clip[:length] = mono[:length]
    return np.clip(np.round(clip * _INT16_SCALE), -32768, 32767).astype(np.int16), suspect


def suspect_reason(data, file_rate, declared_frames=None):
    """Why a decoded file looks damaged, in a few words; None if it does not.

    Args:
      data: its samples, `[frames, channels]`, as read.
      file_rate: its sample rate, in Hz.
      declared_frames: the frames its header declares (`_declared_frames`), or
        None if unknown.
    """
    frames = data.shape[0]
    reasons = []
    if declared_frames is not None and frames < declared_frames:
        reasons.append(f"truncated: its header declares {declared_frames} frames, it holds "
                       f"{frames}")
    if frames < MIN_SECONDS * file_rate:
        reasons.append(f"only {frames} sample(s) ({1000 * frames / file_rate:.3g} ms, under "
                       f"{1000 * MIN_SECONDS:g} ms)")
    if not np.any(data):
        reasons.append("every sample is zero")
    return "; ".join(reasons) or None


def _declared_frames(path_or_fileobj):
    """The frames a WAV or AU header declares; None for other formats or an open length.

    A seekable file object is read from its position and put back there.
    """
    if isinstance(path_or_fileobj, (str, bytes, os.PathLike)):
        with open(path_or_fileobj, "rb") as stream:
            return _declared_frames(stream)
    stream = path_or_fileobj
    if not (hasattr(stream, "seekable") and stream.seekable()):
        return None
    start = stream.tell()
    try:
        head = stream.read(12)
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            return _wav_declared_frames(stream)
        if head[:4] == b".snd":  # AU: offset, size, encoding, rate, channels, big-endian.
            _, size, encoding, _, channels = struct.unpack(">5I", head[4:12] + stream.read(12))
            width = _AU_SAMPLE_BYTES.get(encoding)
            if size == _UNKNOWN_SIZE or not width or not channels:
                return None
            return size // (width * channels)
        return None
    except struct.error:  # A header too short to say; libsndfile will judge the file.
        return None
    finally:
        stream.seek(start)


def _wav_declared_frames(stream):
    """The frames of a RIFF WAVE stream's `data` chunk (read past "RIFF....WAVE")."""
    block_align = None
    while True:
        header = stream.read(8)
        if len(header) < 8:
            return None
        chunk, size = header[:4], struct.unpack("<I", header[4:])[0]
        if chunk == b"data":
            if not block_align or size in (0, _UNKNOWN_SIZE):
                return None
            return size // block_align
        padded = size + (size & 1)  # Chunks are padded to an even size.
        if chunk == b"fmt ":
            (block_align,) = struct.unpack("<H", stream.read(padded)[12:14])
        else:
            stream.seek(padded, os.SEEK_CUR)


def _resample(signal, orig_sr, target_sr):
    """Resamples a 1-D float signal with librosa's soxr_hq resampler."""
    import librosa  # Imported here: librosa loads numba and scipy, slow to import.

    return librosa.resample(
        np.asarray(signal, dtype=np.float64),
        orig_sr=orig_sr,
        target_sr=target_sr,
        res_type=RESAMPLE_TYPE,
    )
