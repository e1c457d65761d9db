"""The name of an audio folder's BuilderConfig: its content and options, hashed.

TFDS stores each config under `<data_dir>/audio_folder/<config name>/<version>/`,
so the name decides when prepared data is reused: an unchanged folder prepared
again with the same options gets the same name, any change a new one. Prepared
data and trained runs are found by these names: keep them as they are.
"""

import hashlib
import json
import re


def config_name(root, files, *, version, sample_rate, num_samples, num_folds, folds_csv=None,
                fold_assignment=None):
    """`<folder name>-<12 hex digits>`: a slug of the folder's name and a hash.

    The hash covers the folder's absolute path; the relative path, size,
    modification time and fold of every audio file; the bytes of folds.csv or
    else the name of the assignment that dealt the folds; the options (rate,
    clip length in samples, number of folds) and the builder version.

    Args:
      root: the folder, an absolute `pathlib.Path`.
      files: its `scan.AudioFile`s, sorted by path.
      version: the builder's version, e.g. "1.0.0".
      sample_rate: rate of the clips, in Hz.
      num_samples: clip length, in samples.
      num_folds: number of folds.
      folds_csv: path of the folder's folds.csv, or None if it has none.
      fold_assignment: without folds.csv, the name of the assignment that dealt
        the folds (`tfds_builders.folds.FILE_FOLD_ASSIGNMENT`).
    """
    csv_digest = hashlib.sha256(folds_csv.read_bytes()).hexdigest() if folds_csv else None
    fields = {
        "version": version,
        "audio_dir": str(root),
        "sample_rate": sample_rate,
        "num_samples": num_samples,
        "num_folds": num_folds,
        "files": [[f.path, f.size, f.mtime_ns, f.fold] for f in files],
        "folds_csv": csv_digest,
    }
    if fold_assignment is not None:
        # Added with the per-file assignment: names made with folds.csv, which did
        # not change, stay as they were.
        fields["fold_assignment"] = fold_assignment
    content = json.dumps(fields, sort_keys=True)
    digest = hashlib.sha256(content.encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", root.name).strip("_")[:40] or "folder"
    return f"{slug}-{digest}"
