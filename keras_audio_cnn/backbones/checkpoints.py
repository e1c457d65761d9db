"""Pretrained PyTorch checkpoints as cached Keras weights: download, verify, read, cache.

A family whose weights are published as a PyTorch checkpoint (PANNs' `.pth` files)
converts them once. The converted weights are cached like a keras-hub preset: a
folder holding `model.weights.h5` and `preset.json` (the backbone, the checkpoint's
source and SHA-256, the class names of its head), named after the backbone and the
checkpoint's SHA-256, under Keras's cache directory (`$KERAS_HOME`, default
`~/.keras`):

    <KERAS_HOME>/keras_audio_cnn/presets/panns_cnn14-0dc499e40e9761ef/
    <KERAS_HOME>/keras_audio_cnn/downloads/Cnn14_mAP=0.431.pth      (the download)

A second run finds the preset and needs neither torch nor the network. Every file is
written under a temporary name and renamed into place whole, so an interrupted
download or conversion leaves nothing that a later run would take for finished.

Checkpoints are read with `torch.load(weights_only=True)`: no code in the file runs.
"""

import hashlib
import json
import os
import shutil
import tempfile

import keras

from keras_audio_cnn.errors import ModelConfigError, one_line

PRESET_WEIGHTS = "model.weights.h5"
PRESET_JSON = "preset.json"
# Globals besides tensors that released checkpoints pickle (numpy arrays and scalars),
# which torch's weights-only unpickler accepts when named: data, not code.
_NUMPY_GLOBALS = ("numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
                  "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
                  "numpy.ndarray", "numpy.dtype")
_CHUNK = 2**20


def cache_root():
    """`<KERAS_HOME>/keras_audio_cnn`, where Keras keeps its own downloads."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "keras_audio_cnn")


def downloads_dir():
    return os.path.join(cache_root(), "downloads")


def preset_dir(backbone, sha256):
    return os.path.join(cache_root(), "presets", f"{backbone}-{sha256[:16]}")


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def read_preset(directory):
    """The `preset.json` of a complete preset folder, or None."""
    path = os.path.join(directory, PRESET_JSON)
    if not (os.path.isfile(path) and os.path.isfile(os.path.join(directory, PRESET_WEIGHTS))):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_preset(directory, model, description):
    """Saves `model`'s weights and `description` as the preset folder `directory`, whole:
    written beside it, then renamed. A preset another process finished first is kept."""
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=".converting-", dir=parent)
    try:
        model.save_weights(os.path.join(temporary, PRESET_WEIGHTS))
        with open(os.path.join(temporary, PRESET_JSON), "w", encoding="utf-8") as f:
            json.dump(description, f, indent=2)
            f.write("\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o777 & ~umask)  # as a folder made by os.makedirs (not 0700)
        try:
            os.rename(temporary, directory)
        except OSError:
            if read_preset(directory) is None:  # not another process's finished preset
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def import_torch(what):
    """torch, or a one-line `ModelConfigError` saying how to install it."""
    try:
        import torch
    except ImportError:
        raise ModelConfigError(
            f"reading {what} needs PyTorch, which is not installed: pip install -e "
            "\".[audioset]\" (only the first run needs it: the converted weights are "
            "cached)") from None
    return torch


def read_state_dict(path, what, key="model"):
    """The tensors of a PyTorch checkpoint as `{name: numpy array}`, read without running
    any code it holds (`torch.load(weights_only=True)`); `checkpoint[key]` when the file
    holds a dict with that key (PANNs' `{"model": state_dict, ...}`)."""
    torch = import_torch(what)
    import numpy as np

    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a torn file, another format, a pickled class or function
        raise ModelConfigError(
            f"{path} is not a PyTorch checkpoint that can be read safely "
            f"({one_line(error)[:240]}); pass the {what} as downloaded (a .pth file)") from None
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
        checkpoint = checkpoint[key]
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise ModelConfigError(f"{path} holds no state dict (a dict of tensors, or one "
                               f"under {key!r}); pass the {what} as downloaded")
    state = {}
    for name, value in checkpoint.items():
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        state[str(name)] = np.asarray(value)
    return state


def _numpy_globals():
    """The numpy functions and classes of `_NUMPY_GLOBALS` that this numpy has, and its
    dtype classes (`numpy.dtypes.Float32DType`, ...): what a pickled array refers to."""
    import importlib

    import numpy as np

    found = []
    for name in _NUMPY_GLOBALS:
        module, _, attribute = name.rpartition(".")
        try:
            found.append((getattr(importlib.import_module(module), attribute), name))
        except (ImportError, AttributeError):
            continue
    dtypes = getattr(np, "dtypes", None)
    found += [getattr(dtypes, name) for name in dir(dtypes) if name.endswith("DType")]
    return found


def download(url, file, sha256, what):
    """The verified checkpoint `file` in `downloads_dir()`: found there, or downloaded from
    `url` (under a temporary name, checked against `sha256`, then renamed).

    Raises a one-line `ModelConfigError` when offline (with the URL and where to put
    the file) or when the file's SHA-256 is not the published one.
    """
    target = os.path.join(downloads_dir(), file)
    if os.path.isfile(target):
        found = sha256_of(target)
        if found == sha256:
            return target
        raise ModelConfigError(
            f"{target} is not the published {what} (its SHA-256 is {found}, not {sha256}); "
            f"delete it and run again to download it from {url}")
    from tfds_builders.common import probe

    os.makedirs(downloads_dir(), exist_ok=True)
    temporary = os.path.join(downloads_dir(), f".{file}.{os.getpid()}.part")
    try:
        probe(url)
        keras.utils.get_file(fname=os.path.basename(temporary), origin=url,
                             cache_dir=downloads_dir(), cache_subdir=".")
    except Exception as error:  # offline, refused, an HTTP error status
        _remove(temporary)
        raise ModelConfigError(
            f"cannot download the {what} from {url} ({one_line(error)[:200]}); download it "
            f"on a machine with internet and put it at {target}, or pass --weights=PATH of "
            "the .pth file, then run again") from None
    except BaseException:
        _remove(temporary)
        raise
    found = sha256_of(temporary)
    if found != sha256:
        _remove(temporary)
        raise ModelConfigError(
            f"the download of {url} is not the published {what} (SHA-256 {found}, not "
            f"{sha256}); nothing was kept: run again, or download it by hand, check it and "
            "pass --weights=PATH")
    os.replace(temporary, target)
    return target


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
