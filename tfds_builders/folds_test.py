"""Tests of the folds: data.py's stratified carving, the audio folder's per-file folds."""

import hashlib

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from tfds_builders import folds as folds_lib

# File paths of three classes, one with a non-ASCII name, and their folds as
# the audio folder builder dealt them before this module existed.
_PATHS = {
    "b": [f"b/{i}.wav" for i in range(4)],
    "a": [f"a/{i}.wav" for i in range(7)],
    "été": [f"été/{i}.wav" for i in range(5)],
}
_PINNED = {
    "a/0.wav": 1, "a/1.wav": 2, "a/2.wav": 3, "a/3.wav": 1, "a/4.wav": 1, "a/5.wav": 3,
    "a/6.wav": 2, "b/0.wav": 2, "b/1.wav": 1, "b/2.wav": 2, "b/3.wav": 3, "été/0.wav": 1,
    "été/1.wav": 2, "été/2.wav": 3, "été/3.wav": 1, "été/4.wav": 3,
}
_PINNED_SEED_7 = {
    "a/0.wav": 1, "a/1.wav": 1, "a/2.wav": 3, "a/3.wav": 3, "a/4.wav": 1, "a/5.wav": 2,
    "a/6.wav": 2, "b/0.wav": 2, "b/1.wav": 1, "b/2.wav": 2, "b/3.wav": 3, "été/0.wav": 1,
    "été/1.wav": 3, "été/2.wav": 2, "été/3.wav": 3, "été/4.wav": 1,
}


def _indices_by_class(counts):
    """Example indices of classes "0", "1", ... with `counts` members, interleaved."""
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(len(counts)), counts))
    return {str(c): np.flatnonzero(labels == c).tolist() for c in range(len(counts))}


class StratifiedFoldsTest(parameterized.TestCase):
    def test_pinned_folds_of_file_paths(self):
        self.assertEqual(folds_lib.stratified_folds(_PATHS, 3), _PINNED)
        self.assertEqual(folds_lib.stratified_folds(_PATHS, 3, seed=7), _PINNED_SEED_7)

    @parameterized.named_parameters(
        ("file_paths", {c: [f"{c}/{i}.wav" for i in range(n)]
                        for c, n in (("a", 7), ("b", 5), ("c", 3))}, 5),
        ("example_indices", _indices_by_class([10, 20, 5, 7]), 5),
        ("fewer_members_than_folds", _indices_by_class([3, 2, 4]), 5),
    )
    def test_balanced_within_each_class_and_overall(self, keys_by_class, num_folds):
        folds = folds_lib.stratified_folds(keys_by_class, num_folds)
        self.assertCountEqual(folds, [k for keys in keys_by_class.values() for k in keys])
        self.assertTrue(set(folds.values()) <= set(range(1, num_folds + 1)))
        overall = np.bincount(list(folds.values()), minlength=num_folds + 1)[1:]
        self.assertLessEqual(overall.max() - overall.min(), 1)
        for name, keys in keys_by_class.items():
            counts = np.bincount([folds[k] for k in keys], minlength=num_folds + 1)[1:]
            self.assertLessEqual(counts.max() - counts.min(), 1, name)

    def test_deterministic_whatever_the_order_and_seeded(self):
        keys_by_class = _indices_by_class([10, 20, 5, 7])
        folds = folds_lib.stratified_folds(keys_by_class, 5)
        shuffled = {c: list(reversed(k)) for c, k in reversed(list(keys_by_class.items()))}
        self.assertEqual(folds_lib.stratified_folds(shuffled, 5), folds)
        self.assertEqual(folds_lib.stratified_folds(keys_by_class, 5, seed=folds_lib.SEED), folds)
        self.assertNotEqual(folds_lib.stratified_folds(keys_by_class, 5, seed=1), folds)


class FileFoldsTest(absltest.TestCase):
    def test_a_fold_is_one_plus_the_sha256_of_salt_and_key_mod_num_folds(self):
        keys = [f"{c}/{i}.wav" for c in ("a", "b", "été") for i in range(7)]
        folds = folds_lib.file_folds(keys, 5)
        for key in keys:
            digest = hashlib.sha256((folds_lib.FILE_SALT + key).encode()).hexdigest()
            self.assertEqual(folds[key], int(digest, 16) % 5 + 1)
        self.assertEqual(folds_lib.FILE_SALT, "keras_audio_cnn/audio_folder/")
        self.assertEqual(folds_lib.FILE_FOLD_ASSIGNMENT, "file-sha256-v1")
        # Pinned: prepared audio folders name these folds.
        self.assertEqual([folds[k] for k in ("a/0.wav", "b/1.wav", "été/2.wav")], [1, 2, 5])
        self.assertNotEqual(folds_lib.file_folds(keys, 5, salt="other/"), folds)

    def test_a_key_keeps_its_fold_whatever_other_keys_come_or_go(self):
        keys = [f"k{i}" for i in range(200)]
        alone = {k: folds_lib.file_folds([k], 4)[k] for k in keys}
        self.assertEqual(folds_lib.file_folds(keys, 4), alone)
        self.assertEqual(folds_lib.file_folds(keys[50:120], 4), {k: alone[k] for k in keys[50:120]})

    def test_balanced_in_expectation(self):
        folds = folds_lib.file_folds([f"class/{i:05d}.wav" for i in range(5000)], 5)
        counts = np.bincount(list(folds.values()), minlength=6)[1:]
        # 1000 each on average; binomial standard deviation about 28.
        self.assertTrue(all(880 < c < 1120 for c in counts), counts)


if __name__ == "__main__":
    absltest.main()
