"""Scanning an audio folder: its class folders and audio files, with their headers.

Nothing is decoded here: names, sizes and modification times come from the file
system and (frames, sample rate) from each file's header, so a scan is cheap and
an unreadable file fails before preparation starts.
"""

import dataclasses
import errno
import os
import pathlib

from absl import logging
import soundfile as sf

from tfds_builders.audio_folder.folds_csv import FOLDS_CSV
from tfds_builders.audio_io import AudioDataError, one_line

# Extensions read as audio (case-insensitive); MP3 only where libsndfile reads it.
MP3_READABLE = "MP3" in sf.available_formats()
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg") + ((".mp3",) if MP3_READABLE else ())
# Folders created by macOS archivers, skipped like hidden entries.
_SKIPPED_NAMES = ("__MACOSX",)
_LAYOUT_HINT = "one sub-folder of audio files per class, e.g. dog/a.wav and cat/b.flac"


@dataclasses.dataclass(frozen=True)
class AudioFile:
    """One audio file of the folder, as scanned by `audio_files`."""

    path: str  # Relative to audio_dir, with "/" separators: "dog/a.wav".
    label: int  # Index of its class folder in the sorted class names.
    size: int  # Bytes.
    mtime_ns: int
    num_frames: int  # Samples per channel at the file's own rate.
    file_rate: int
    fold: int


def folder_root(audio_dir):
    """`audio_dir` as an absolute path; raises `AudioDataError` if it is not a folder."""
    root = pathlib.Path(audio_dir).expanduser()
    if not root.is_dir():
        problem = "is not a folder" if root.exists() else "does not exist"
        raise AudioDataError(f"audio_dir {root} {problem}; give a folder holding {_LAYOUT_HINT}")
    root = root.resolve()
    if not is_utf8(str(root)):
        # TensorFlow's and TFDS's files name it in their records, which hold UTF-8 only.
        raise AudioDataError(
            f"audio_dir {root} has a name that is not UTF-8 text (bytes "
            f"{_undecodable(str(root))}); the prepared data records it: rename the folder"
        )
    return root


def name_bytes(relative_path):
    """A file's name in the dataset, as the bytes the OS gave (its key and `filename`):
    UTF-8 for a UTF-8 name, the original bytes otherwise."""
    return os.fsencode(relative_path)


def is_utf8(name):
    """Whether a name the OS gave (`os.fsdecode`) is UTF-8 text, not bytes that are not."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _undecodable(name):
    """The bytes of a name that are not UTF-8, e.g. "\\xff\\xfe"."""
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" for c in name if 0xDC80 <= ord(c) <= 0xDCFF)


def class_paths(root):
    """Class names (sorted) and {class: sorted relative paths of its audio files}.

    Classes are the sub-folders of `root`; a class's audio files are those with
    an extension in `AUDIO_EXTENSIONS` anywhere below its folder. Hidden entries
    (and `__MACOSX`), other files and files directly in `root` are ignored and
    counted in the log.
    """
    ignored = {"hidden": 0, "non-audio": 0}
    classes = []
    loose_audio = 0
    for entry in _entries(root, root):
        if _skipped(entry.name):
            ignored["hidden"] += 1
        elif _is_folder(entry, root):
            if not is_utf8(entry.name):  # a class name is a label, text everywhere
                raise AudioDataError(
                    f"class folder {entry} has a name that is not UTF-8 text (bytes "
                    f"{_undecodable(entry.name)}); class names are labels in every output: "
                    "rename the folder"
                )
            classes.append(entry.name)
        elif entry.name != FOLDS_CSV:
            ignored["non-audio"] += 1
            loose_audio += entry.suffix.lower() in AUDIO_EXTENSIONS
    if len(classes) < 2:
        found = f" ({', '.join(classes)})" if classes else ""
        raise AudioDataError(
            f"audio_dir {root} has {len(classes)} class folder(s){found}, at least 2 are "
            f"needed; put {_LAYOUT_HINT}"
        )
    if loose_audio:
        logging.warning(
            "audio_folder: ignored %d audio file(s) directly in %s; put them in their class's "
            "sub-folder.", loose_audio, root,
        )

    paths_by_class = {}
    unreadable_mp3 = 0
    for name in classes:
        paths = []
        for path in _walk(root / name, ignored, root):
            if path.suffix.lower() in AUDIO_EXTENSIONS:
                paths.append(path.relative_to(root).as_posix())
            else:
                ignored["non-audio"] += 1
                unreadable_mp3 += path.suffix.lower() == ".mp3"
        if not paths:
            raise AudioDataError(
                f"class folder {root / name} holds no audio files "
                f"({', '.join(AUDIO_EXTENSIONS)}); add recordings to it or remove it"
            )
        paths_by_class[name] = paths
    if unreadable_mp3:
        logging.warning(
            "audio_folder: ignored %d .mp3 file(s): the installed libsndfile cannot read MP3.",
            unreadable_mp3,
        )
    logging.info(
        "audio_folder: %s holds %d audio files in %d classes; ignored %d hidden and %d "
        "non-audio entries.",
        root, sum(map(len, paths_by_class.values())), len(classes),
        ignored["hidden"], ignored["non-audio"],
    )
    return classes, paths_by_class


def read_headers(root, paths_by_class):
    """{relative path: (frames, sample rate)} of every audio file, from its header."""
    return {
        path: _read_header(root / path) for paths in paths_by_class.values() for path in paths
    }


def audio_files(root, classes, paths_by_class, headers, folds):
    """The `AudioFile` of every audio file, sorted by path.

    Args:
      root: the folder.
      classes: class names, sorted: a file's label is its class's index.
      paths_by_class: {class: relative paths of its audio files}.
      headers: {relative path: (frames, sample rate)}, from `read_headers`.
      folds: {relative path: fold}.
    """
    files = []
    for label, name in enumerate(classes):
        for path in paths_by_class[name]:
            stat = (root / path).stat()
            frames, rate = headers[path]
            files.append(
                AudioFile(path, label, stat.st_size, stat.st_mtime_ns, frames, rate, folds[path])
            )
    files.sort(key=lambda f: f.path)
    return files


def check_unchanged(path, audio_file, root):
    """Raises `AudioDataError` if the file at `path` is gone or differs from its scan."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        stat = None
    if stat is None or (stat.st_size, stat.st_mtime_ns) != (audio_file.size, audio_file.mtime_ns):
        what = "was removed" if stat is None else "changed"
        raise AudioDataError(
            f"audio file {path} {what} after make_builder scanned {root}; call make_builder "
            "again so the folder as it is now gets prepared"
        )


def _skipped(name):
    return name.startswith(".") or name in _SKIPPED_NAMES


def _walk(folder, ignored, root, ancestors=()):
    """The files under `folder`, sorted, skipping (and counting) hidden entries.

    Symbolic links are followed; one leading back to a folder it is in (a loop)
    is an error rather than endless recursion.
    """
    identity = _identity(folder)
    if identity in ancestors:
        raise AudioDataError(
            f"folder {folder} is a symbolic link back to a folder it is in "
            f"({os.path.realpath(folder)}), a loop; remove the link from {root}"
        )
    for entry in _entries(folder, root):
        if _skipped(entry.name):
            ignored["hidden"] += 1
        elif _is_folder(entry, root):
            yield from _walk(entry, ignored, root, (*ancestors, identity))
        else:
            yield entry


def _identity(folder):
    stat = folder.stat()
    return stat.st_dev, stat.st_ino


def _entries(folder, root):
    """The entries of `folder`, sorted; raises `AudioDataError` if it cannot be listed."""
    try:
        return sorted(folder.iterdir())
    except OSError as err:
        where = "" if folder == root else f" or move it out of {root}"
        raise AudioDataError(
            f"cannot list folder {folder}: {_reason(err)}; {_fix(err, 'rx')}{where}"
        ) from err


def _is_folder(entry, root):
    """Whether `entry` is a folder, following links; a broken link or a loop is an error.

    (`Path.is_dir` says False for both, so they would be read, and fail, as audio
    files, or be ignored as non-audio ones.)
    """
    try:
        check_link(entry)
        return entry.is_dir()
    except PermissionError as err:
        raise AudioDataError(
            f"cannot read {entry}: {_reason(err)}; {_fix(err, 'rx')} or move it out of {root}"
        ) from err


def check_link(link):
    """Raises `AudioDataError` if the symbolic link `link` leads nowhere or in a loop."""
    if not link.is_symlink():
        return
    target = os.readlink(link)
    try:
        link.stat()
    except FileNotFoundError:
        raise AudioDataError(
            f"{link} is a symbolic link to {link.parent / target}, which does not exist; "
            "restore its target or remove the link"
        ) from None
    except OSError as err:
        if err.errno != errno.ELOOP:
            raise
        raise AudioDataError(
            f"{link} is a symbolic link loop (to {target}, which leads back to it); remove "
            "the link or point it to a folder or file"
        ) from None


def _reason(err):
    """An `OSError` in a few words: "permission denied", "no such file or directory"."""
    return (err.strerror or one_line(err)).lower()


def _fix(err, mode):
    """What to do about an `OSError` on a file (mode "r") or a folder ("rx")."""
    if isinstance(err, PermissionError):
        return f"make it readable (chmod u+{mode})"
    return "repair it"


def _read_header(path):
    """(frames, sample rate) of an audio file, from its header."""
    if not path.is_file():  # Opening a named pipe would wait for a writer forever.
        raise AudioDataError(
            f"{path} is not a regular file (a named pipe, socket or device); move it out of "
            "the folder"
        )
    try:
        audio_file = path.open("rb")
    except OSError as err:  # Permission denied, or removed since it was listed.
        raise AudioDataError(
            f"cannot read audio file {path}: {_reason(err)}; {_fix(err, 'r')} or move it out "
            "of the folder"
        ) from err
    try:
        with audio_file:
            info = sf.info(audio_file)
    except Exception as err:  # libsndfile reports every problem its own way.
        reason = getattr(err, "error_string", None) or err
        raise AudioDataError(
            f"cannot decode audio file {path}: {one_line(reason)}; replace it with a "
            "readable file or move it out of the folder"
        ) from err
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioDataError(
            f"audio file {path} holds no samples; delete it or replace it with a recording"
        )
    return int(info.frames), int(info.samplerate)
