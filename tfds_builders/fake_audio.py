"""Byte-deterministic audio files, folders and archives for the builders' fake data."""

import gzip
import io
import pathlib
import struct
import tarfile

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


def write_tree(top, files):
    """Writes `files` ({relative path: bytes}) under the folder `top`; returns it."""
    top = pathlib.Path(top)
    for relative, content in files.items():
        (top / relative).parent.mkdir(parents=True, exist_ok=True)
        (top / relative).write_bytes(content)
    return top


def write_tar_gz(path, top, files, mtime=0):
    """Writes `files` under the folder `top` as a byte-deterministic .tar.gz."""

    def entry(name, kind, mode, size=0):
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.size, info.mtime = kind, mode, size, mtime
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    folders = sorted({
        "/".join(parts[: i + 1])
        for relative in files
        for parts in [pathlib.PurePosixPath(relative).parts[:-1]]
        for i in range(len(parts))
    })
    with open(path, "wb") as raw, gzip.GzipFile(
        filename="", mode="wb", fileobj=raw, mtime=mtime
    ) as compressed, tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for folder in [top, *(f"{top}/{f}" for f in folders)]:
            tar.addfile(entry(folder, tarfile.DIRTYPE, 0o755))
        for relative in sorted(files):
            content = files[relative]
            tar.addfile(entry(f"{top}/{relative}", tarfile.REGTYPE, 0o644, len(content)),
                        io.BytesIO(content))
    return path
