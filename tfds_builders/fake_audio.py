"""Byte-deterministic audio files for the builders' fake data."""

import io
import struct

import soundfile as sf


def audio_bytes(signal, rate, subtype, container="WAV"):
    """`signal` encoded by libsndfile, the same bytes on every run."""
    buffer = io.BytesIO()
    sf.write(buffer, signal, rate, subtype=subtype, format=container)
    data = bytearray(buffer.getvalue())
    if data[:4] == b"RIFF":  # WAV and WAVEX
        _zero_peak_timestamp(data)
    return bytes(data)


def _zero_peak_timestamp(wav):
    """Zeroes the write time libsndfile stores in the PEAK chunk of float WAVs."""
    position = 12  # After "RIFF", the size and "WAVE".
    while position + 8 <= len(wav):
        chunk_id = bytes(wav[position : position + 4])
        (size,) = struct.unpack("<I", wav[position + 4 : position + 8])
        if chunk_id == b"PEAK":  # version (4 bytes), timestamp (4 bytes), peaks.
            wav[position + 12 : position + 16] = bytes(4)
        position += 8 + size + (size & 1)
