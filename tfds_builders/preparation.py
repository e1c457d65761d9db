"""Preparing a builder's dataset safely next to other processes sharing its data_dir.

`prepare(builder, download_config)` runs TFDS's `download_and_prepare` with
three guarantees that TFDS 4.9 lacks:

- One preparation of a dataset (builder name, config and version) at a time:
  an exclusive `fcntl.flock` on `<data_dir>/<name>/<config>/<version>.lock`,
  released by the kernel if its holder dies. A second process waits, then
  reuses the data the first one prepared. (TFDS alone lets both prepare, and
  the second to finish fails renaming its copy into place.)
- Leftovers of killed preparations of the same dataset, TFDS's
  `incomplete.XXXXXX_<version>/` folders beside the version folder (up to a
  whole copy of the dataset each), are removed under that lock, so never while
  a live preparation writes them. Other datasets' leftovers are never touched.
- A failed preparation removes what it created and nothing else: TFDS already
  removes its `incomplete.*` folder on an exception; here the folders the call
  created on the way (`<data_dir>` itself, `<name>/`, `<config>/`,
  `downloads/`, `downloads/extracted/`) are removed if they are empty, and with
  them the lock file and the `<name>/.config/` TFDS writes for builders with
  configs. A folder another process put something in stays.

What TFDS 4.9.10 itself creates in `download_and_prepare`: `downloads/` and
`downloads/extracted/` (its download manager, even with nothing to download);
for builders with configs `<name>/.config/metadata.json` (the default config's
name, written atomically); `<name>/<config>/incomplete.XXXXXX_<version>/`, the
dataset being written, renamed to `<version>/` at the end and removed on an
exception (not when the process is killed); downloads in
`downloads/<file>.tmp.<uuid>/` and extractions in
`downloads/extracted/incomplete.<uuid>_<name>/`, renamed into place when
complete. After a success it deletes stray `incomplete.<uuid>.*` files inside
`<version>/`. The download cache (`downloads/`) is shared by all datasets and
kept: a failed extraction's `incomplete.*` folder there is TFDS's and stays.

Storage that is not a local file system (`gs://...`) has no `flock`: there
`prepare` is TFDS's `download_and_prepare` alone.
"""

import contextlib
import fcntl
import os
import pathlib
import re
import shutil

from absl import logging

# TFDS's temporary dataset folder: `incomplete.` + 6 upper-case letters or digits
# + `_` + the version (`utils.file_utils._get_incomplete_dir`).
_INCOMPLETE = "incomplete.[A-Z0-9]{{6}}_{version}"
_DATASET_INFO = "dataset_info.json"  # Written last: a version folder with it is complete.


def prepare(builder, download_config=None):
    """Prepares `builder`'s dataset, or reuses it when it is there or another process made it.

    Args:
      builder: a `tfds.core.DatasetBuilder` for a local `data_dir` (or remote,
        see the module docstring).
      download_config: passed to `download_and_prepare`.

    Raises:
      Whatever the preparation raises, after removing what this call created.
    """
    version_dir = pathlib.Path(os.fspath(builder.data_dir))
    if "://" in os.fspath(builder.data_dir):
        builder.download_and_prepare(download_config=download_config)
        return
    if _complete(version_dir) and not _stale(version_dir):
        _read_info(builder, version_dir)
        return
    created = _missing_folders(builder, version_dir)
    try:
        with _exclusive(version_dir):
            _remove_stale(version_dir)
            if _complete(version_dir):  # Prepared by another process meanwhile.
                _read_info(builder, version_dir)
                return
            builder.download_and_prepare(download_config=download_config)
    except BaseException:
        _remove_empty(created, pathlib.Path(os.fspath(builder.data_dir_root)) / builder.name)
        raise


def _read_info(builder, version_dir):
    """Reads the prepared data's info into `builder`, if it was made before the data was.

    (A builder reads it when it is made; one made while another process was
    still preparing has the info of its code: no splits.)
    """
    if not builder.info.splits:
        builder.info.read_from_directory(version_dir)


def lock_path(version_dir):
    """The lock file of the dataset in `version_dir`: `<version_dir>.lock`, beside it."""
    version_dir = pathlib.Path(version_dir)
    return version_dir.with_name(f"{version_dir.name}.lock")


def _complete(version_dir):
    return (version_dir / _DATASET_INFO).exists()


def _stale(version_dir):
    """TFDS's temporary folders of this version beside `version_dir` (killed preparations)."""
    folder = version_dir.parent
    if not folder.is_dir():
        return []
    pattern = re.compile(_INCOMPLETE.format(version=re.escape(version_dir.name)))
    return sorted(p for p in folder.iterdir() if pattern.fullmatch(p.name) and p.is_dir())


def _remove_stale(version_dir):
    stale = _stale(version_dir)
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    if stale:
        logging.warning(
            "removed %d unfinished folder(s) of %s left by killed preparations: %s",
            len(stale), version_dir, ", ".join(p.name for p in stale),
        )


def _missing_folders(builder, version_dir):
    """The folders a preparation may create that do not exist yet, deepest first."""
    root = pathlib.Path(os.fspath(builder.data_dir_root))
    downloads = root / "downloads"
    candidates = [*version_dir.parents, downloads, downloads / "extracted"]
    missing = {p for p in candidates if not p.exists() and (p == root or root in p.parents
                                                             or p in root.parents)}
    return sorted(missing, key=lambda p: len(p.parts), reverse=True)


def _remove_empty(folders, dataset_folder):
    """Removes each of `folders` (deepest first) that is empty; TFDS's `.config` with its
    dataset's folder when that holds nothing else."""
    for folder in folders:
        if folder == dataset_folder and _entries(folder) == [".config"]:
            shutil.rmtree(folder / ".config", ignore_errors=True)
        with contextlib.suppress(OSError):  # Not empty: another process's work is in it.
            folder.rmdir()


def _entries(folder):
    try:
        return os.listdir(folder)
    except OSError:
        return None


@contextlib.contextmanager
def _exclusive(version_dir):
    """Holds the dataset's lock file exclusively; removes it on leaving.

    The file is removed while held, so a process that opened it before and gets
    the lock after finds it unlinked (another inode than the path's, or none)
    and opens the path again rather than holding a lock nobody else sees.
    """
    path = lock_path(version_dir)
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:  # A failed preparation removed the folder meanwhile.
            continue
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                logging.warning("%s is being prepared by another process; waiting for it "
                                "(lock %s)", version_dir, path)
                fcntl.flock(handle, fcntl.LOCK_EX)
            if _same_file(handle, path):
                break
        except BaseException:
            os.close(handle)
            raise
        os.close(handle)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(handle)


def _same_file(handle, path):
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(handle)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)
