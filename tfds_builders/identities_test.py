"""Tests of `identities.fingerprint` (the readers are tested through data.py's data_record)."""

import hashlib

from absl.testing import absltest

from tfds_builders import identities


class FingerprintTest(absltest.TestCase):
    def test_sorted_identities_one_a_line(self):
        expected = hashlib.sha256(b"a/x.wav:0\na/x.wav:1\nb/y.wav:0\n").hexdigest()
        self.assertEqual(identities.fingerprint(["b/y.wav:0", "a/x.wav:1", "a/x.wav:0"]), expected)
        self.assertNotEqual(identities.fingerprint(["a/x.wav:0", "b/y.wav:0"]), expected)
        self.assertEqual(identities.fingerprint([]), hashlib.sha256(b"").hexdigest())


if __name__ == "__main__":
    absltest.main()
