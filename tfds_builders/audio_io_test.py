"""Tests of `audio_io.load_clip_checked`: which decodable files are suspect, and why."""

import io
import pathlib
import shutil
import struct
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import soundfile as sf

from tfds_builders import audio_io

_RATE = 8000


def _tone(frames, channels=1):
    wave = 0.5 * np.sin(2 * np.pi * 440.0 * np.arange(frames) / _RATE)
    return np.repeat(wave[:, None], channels, axis=1)


class SuspectTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = pathlib.Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir)

    def _write(self, name, signal, **kwargs):
        path = self.dir / name
        sf.write(path, signal, _RATE, **kwargs)
        return path

    @parameterized.named_parameters(
        ("wav_pcm16", "x.wav", {"subtype": "PCM_16"}, 1, 2),
        ("wav_float_stereo", "x.wav", {"subtype": "FLOAT"}, 2, 8),
        ("wavex_pcm24", "x.wav", {"subtype": "PCM_24", "format": "WAVEX"}, 1, 3),
        ("au_pcm16", "x.au", {"subtype": "PCM_16", "format": "AU"}, 1, 2),
    )
    def test_cut_short_file_reads_what_is_there_and_is_suspect(self, name, options, channels,
                                                              frame_bytes):
        path = self._write(name, _tone(4000, channels), **options)
        whole = path.read_bytes()
        cut = len(whole) - 1000 * frame_bytes - 1  # 1000 frames and a byte of one more.
        path.write_bytes(whole[:cut])
        # libsndfile reads the frames present without an error...
        self.assertEqual(sf.info(path).frames, 2999)
        clip, suspect = audio_io.load_clip_checked(path, _RATE, 4000)
        self.assertEqual(suspect, "truncated: its header declares 4000 frames, it holds 2999")
        self.assertFalse(np.any(clip[2999:]))
        # ...and the same from a file object, left where it was.
        with path.open("rb") as audio_file:
            again, suspect_again = audio_io.load_clip_checked(audio_file, _RATE, 4000)
        np.testing.assert_array_equal(again, clip)
        self.assertEqual(suspect_again, suspect)

    @parameterized.named_parameters(
        ("one_sample", np.full((1, 1), 0.5), "only 1 sample(s) (0.125 ms, under 25 ms)"),
        ("just_under_25_ms", _tone(199), "only 199 sample(s) (24.9 ms, under 25 ms)"),
        ("all_zero", np.zeros((4000, 2)), "every sample is zero"),
        ("one_zero_sample", np.zeros((1, 1)),
         "only 1 sample(s) (0.125 ms, under 25 ms); every sample is zero"),
    )
    def test_too_short_or_silent_file_is_suspect(self, signal, reason):
        path = self._write("x.wav", signal, subtype="PCM_16")
        self.assertEqual(audio_io.load_clip_checked(path, _RATE, 100)[1], reason)

    def test_unsigned_8bit_silence_is_all_zero(self):
        path = self._write("x.wav", np.zeros(4000), subtype="PCM_U8")  # Stored as 128s.
        self.assertEqual(audio_io.load_clip_checked(path, _RATE, 100)[1], "every sample is zero")

    @parameterized.named_parameters(
        ("wav", "x.wav", {"subtype": "PCM_16"}),
        ("flac", "x.flac", {"subtype": "PCM_16"}),
        ("ogg", "x.ogg", {"subtype": "VORBIS"}),
        ("au", "x.au", {"subtype": "PCM_16", "format": "AU"}),
    )
    def test_intact_file_is_not_suspect(self, name, options):
        path = self._write(name, _tone(200), **options)  # 25 ms: just long enough.
        clip, suspect = audio_io.load_clip_checked(path, _RATE, 300)
        self.assertIsNone(suspect)
        np.testing.assert_array_equal(clip, audio_io.load_clip(path, _RATE, 300))

    def test_streamed_wav_of_open_length_is_not_suspect(self):
        data = bytearray(self._write("x.wav", _tone(4000), subtype="PCM_16").read_bytes())
        position = data.index(b"data")
        data[position + 4 : position + 8] = struct.pack("<I", 0xFFFFFFFF)
        self.assertIsNone(audio_io.load_clip_checked(io.BytesIO(bytes(data)), _RATE, 100)[1])


if __name__ == "__main__":
    absltest.main()
