"""How an audio folder's files become clips: the clip length and where clips start."""

import numpy as np

from tfds_builders.audio_io import MAX_CLIP_SECONDS

# A file's last piece shorter than a clip becomes a zero-padded clip only if it
# is at least this fraction of a clip (a file's first clip is always kept).
MIN_TAIL_FRACTION = 0.5


def resampled_length(num_frames, file_rate, sample_rate):
    """Samples of a file of `num_frames` at `file_rate` once resampled to `sample_rate`.

    librosa's resampler returns ceil(frames * sample_rate / file_rate) samples.
    """
    return -(-num_frames * sample_rate // file_rate)


def clip_length(headers, sample_rate, clip_seconds):
    """Samples of a clip: `clip_seconds` long, or by default as long as the longest
    file, but at most `MAX_CLIP_SECONDS`.

    Args:
      headers: (frames, file rate) of every file.
      sample_rate: rate of the clips, in Hz.
      clip_seconds: the clip length asked for, or None.
    """
    if clip_seconds is None:
        longest = max(resampled_length(frames, rate, sample_rate) for frames, rate in headers)
        return min(longest, round(MAX_CLIP_SECONDS * sample_rate))
    return max(1, round(clip_seconds * sample_rate))


def clip_starts(length, num_samples):
    """Where the clips cut from a waveform of `length` samples start.

    Consecutive clips of `num_samples`; a last piece shorter than a clip is kept
    (to be zero-padded) if it is at least `MIN_TAIL_FRACTION` of a clip, and
    dropped otherwise. A waveform shorter than a clip gives one clip.
    """
    full, tail = divmod(int(length), int(num_samples))
    count = full + (1 if tail >= MIN_TAIL_FRACTION * num_samples else 0)
    return [i * num_samples for i in range(max(count, 1))]


def cut_clips(waveform, num_samples):
    """The clips of `clip_starts` cut from `waveform`, each zero-padded to `num_samples`."""
    for start in clip_starts(len(waveform), num_samples):
        clip = np.zeros(num_samples, dtype=waveform.dtype)
        piece = waveform[start : start + num_samples]
        clip[: len(piece)] = piece
        yield clip
