"""A recording of any length as the model's clip-length windows, decoded in blocks.

The waveform a window holds is the one training would have stored for the same
audio (`tfds_builders.audio_io.load_clip`): channels averaged in float64, a file
at another rate resampled with the same soxr filter (`audio_io.RESAMPLE_TYPE`;
soxr's streaming resampler gives the same samples as librosa's one-shot call,
and the resampled length is librosa's, `ceil(frames * rate / file_rate)`), then
rounded to 16-bit PCM values, as the prepared data stores them. A 16-bit file at
the model's rate therefore gives exactly the waveform training saw.

Nothing holds more than a block of the file and a window: a recording of hours
streams through `soundfile.SoundFile.blocks` and `soxr.ResampleStream`.
"""

import math

import numpy as np
import soundfile as sf
import soxr

from keras_audio_cnn.errors import ConfigError
from tfds_builders.audio_io import RESAMPLE_TYPE, AudioDataError, one_line, sndfile_path

BLOCK_FRAMES = 1 << 16  # frames decoded at a time (at the file's own rate)
_FIX = "check the file, or leave it out"


def window_starts(length, num_samples, hop):
    """Where the windows of a waveform of `length` samples start (sample indices).

    Windows of `num_samples` every `hop` samples, until one reaches the end; the
    last is zero-padded at the end, as training pads a short clip. A waveform of
    at most one clip gives one window.
    """
    return [i * hop for i in range(window_count(length, num_samples, hop))]


def window_count(length, num_samples, hop):
    """How many windows `window_starts` gives."""
    return 1 + math.ceil(max(0, int(length) - int(num_samples)) / hop)


def resampled_length(frames, file_rate, sample_rate):
    """Samples at `sample_rate` of `frames` at `file_rate`: librosa's length,
    `ceil(frames * sample_rate / file_rate)`."""
    return -(-int(frames) * int(sample_rate) // max(int(file_rate), 1))


def to_pcm16(samples):
    """Float samples rounded to 16-bit PCM values and scaled back, as training's clips
    are (`audio_io.load_clip` stores int16, training multiplies by 1/32768)."""
    return (np.clip(np.round(samples * 32768.0), -32768, 32767) / 32768.0).astype(np.float32)


class Recording:
    """One audio file as the model's windows: iterate for `(start, window)` pairs.

    `start` is the window's first sample (at `sample_rate`), `window` a float32
    array of `num_samples`. Once iterated, `length` is the recording's length in
    samples at `sample_rate`.

    Raises (while iterating):
      AudioDataError: the file cannot be decoded, holds no samples, or holds NaN or
        infinite samples. Windows already yielded are then not the whole file.
    """

    def __init__(self, path, sample_rate, num_samples, hop, block_frames=BLOCK_FRAMES):
        self.path = path
        self.sample_rate = int(sample_rate)
        self.num_samples = int(num_samples)
        self.hop = int(hop)
        self.block_frames = int(block_frames)
        self.length = None

    def __iter__(self):
        n, hop = self.num_samples, self.hop
        buffer, offset, start = np.zeros(0, np.float32), 0, 0  # buffer[0] is sample `offset`
        for block in self._blocks():
            buffer = np.concatenate([buffer, to_pcm16(block)])
            while start + n <= offset + len(buffer):
                yield start, buffer[start - offset:start - offset + n]
                start += hop
            keep = min(start - offset, len(buffer))  # samples no later window needs
            buffer, offset = buffer[keep:], offset + keep
        length = offset + len(buffer)
        if start == 0 or start - hop + n < length:  # no window yet, or the end not reached
            window = np.zeros(n, np.float32)
            piece = buffer[start - offset:]
            window[:len(piece)] = piece
            yield start, window
        self.length = length

    def _blocks(self):
        """Mono float64 blocks at `sample_rate`, `ceil(frames * rate / file_rate)` in all."""
        try:
            audio = sf.SoundFile(sndfile_path(self.path))
        except Exception as error:  # libsndfile reports every problem its own way
            raise self._error(error) from error
        with audio:
            file_rate = audio.samplerate
            resampler = None if file_rate == self.sample_rate else soxr.ResampleStream(
                file_rate, self.sample_rate, 1, dtype="float64", quality=RESAMPLE_TYPE)
            frames = produced = 0
            blocks = audio.blocks(self.block_frames, dtype="float64", always_2d=True)
            while True:
                try:
                    block = next(blocks, None)
                except Exception as error:  # a file damaged after its header
                    raise self._error(error) from error
                if block is None:
                    break
                if not np.isfinite(block).all():
                    raise AudioDataError(f"audio file {self.path} holds NaN or infinite "
                                         f"samples; {_FIX}")
                frames += len(block)
                mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
                out = resampler.resample_chunk(mono) if resampler else mono
                produced += len(out)
                yield out
        if frames == 0:
            raise AudioDataError(f"audio file {self.path} holds no samples; {_FIX}")
        if resampler:
            out = resampler.resample_chunk(np.zeros(0), last=True)
            expected = resampled_length(frames, file_rate, self.sample_rate)
            yield np.pad(out, (0, max(0, expected - produced - len(out))))

    def _error(self, error):
        reason = getattr(error, "error_string", None) or error  # LibsndfileError's words
        return AudioDataError(f"cannot decode audio file {self.path}: {one_line(reason)}; {_FIX}")


def hop_samples(hop_seconds, sample_rate, num_samples):
    """The hop between windows in samples: `hop_seconds` (default half a clip), between
    one sample and one clip."""
    if hop_seconds is None:
        return max(1, int(num_samples) // 2)
    hop = round(float(hop_seconds) * sample_rate)
    if not 1 <= hop <= num_samples:
        raise ConfigError(
            f"--hop_seconds={hop_seconds} is not between one sample and one clip of the model "
            f"({num_samples / sample_rate:g} s at {sample_rate} Hz); give a hop in that range")
    return hop
