"""PANNs weights: the checkpoint is downloaded once, checked, read safely, converted and
cached; every way of getting it wrong is one line."""

import functools
import http.server
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import torch

from benchmarks import panns_reference
from keras_audio_cnn import model as model_lib
from keras_audio_cnn.backbones import checkpoints, panns
from keras_audio_cnn.errors import ModelConfigError

SPEC = panns.VARIANTS["panns_cnn14"]


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def reference():
    return panns_reference.reference(SPEC)


@pytest.fixture(scope="module")
def checkpoint(reference, tmp_path_factory):
    path = tmp_path_factory.mktemp("checkpoint") / "Cnn14_random.pth"
    panns_reference.save_checkpoint(reference, path, iteration=np.int64(7))
    return path


def _state(reference):
    return {key: value.clone() for key, value in reference.state_dict().items()}


def _message(error):
    text = str(error.value)
    assert "\n" not in text
    return text


def test_a_checkpoint_is_converted_once_and_cached_as_a_preset(keras_home, checkpoint):
    directory = panns.pretrained_preset(SPEC.name, str(checkpoint))
    preset = checkpoints.read_preset(directory)
    assert preset["sha256"] == checkpoints.sha256_of(checkpoint)
    assert preset["backbone"] == SPEC.name and preset["source"] == checkpoint.name
    assert len(preset["class_names"]) == 527 and preset["class_names"][0] == "Speech"
    assert directory == checkpoints.preset_dir(SPEC.name, preset["sha256"])
    assert directory.startswith(str(keras_home))
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(directory).st_mode & 0o777 == 0o777 & ~umask  # readable as any folder
    made = os.path.getmtime(os.path.join(directory, checkpoints.PRESET_WEIGHTS))
    assert panns.pretrained_preset(SPEC.name, str(checkpoint)) == directory
    assert os.path.getmtime(os.path.join(directory, checkpoints.PRESET_WEIGHTS)) == made
    assert not [p for p in os.listdir(os.path.dirname(directory)) if p.startswith(".")]


def test_fine_tuning_keeps_everything_but_the_audioset_head(keras_home, checkpoint, reference):
    model = model_lib.build_model(SPEC.name, 5, SPEC.sample_rate, SPEC.sample_rate,
                                  weights=str(checkpoint))
    state = reference.state_dict()
    kernel = model.get_layer("cnn14").get_layer("conv_block2_conv1").get_weights()[0]
    np.testing.assert_array_equal(kernel, state["conv_block2.conv1.weight"].numpy().transpose(
        3, 2, 1, 0))
    np.testing.assert_array_equal(model.get_layer("bn0").get_weights()[2],
                                  state["bn0.running_mean"].numpy())
    assert model.get_layer("predictions").get_weights()[0].shape == (2048, 5)
    assert model.get_layer("dropout").rate == 0.5  # PANNs' transfer recipe
    random = model_lib.build_model(SPEC.name, 5, SPEC.sample_rate, SPEC.sample_rate,
                                   weights="none")
    assert not np.array_equal(random.get_layer("cnn14").get_layer(
        "conv_block2_conv1").get_weights()[0], kernel)


def test_trainable_and_reinit_from_name_cnn14_blocks(keras_home, checkpoint, reference):
    model = model_lib.build_model(SPEC.name, 5, SPEC.sample_rate, SPEC.sample_rate,
                                  weights=str(checkpoint), trainable="from:conv_block5",
                                  reinit_from="conv_block6")
    trunk = model.get_layer("cnn14")
    assert model_lib.block_names(trunk) == [f"conv_block{k}" for k in range(1, 7)]
    assert not trunk.get_layer("conv_block4_conv2").trainable
    assert trunk.get_layer("conv_block5_conv1").trainable and trunk.get_layer("fc1").trainable
    assert not model.get_layer("bn0").trainable  # it precedes every block
    state = reference.state_dict()
    np.testing.assert_array_equal(trunk.get_layer("conv_block5_conv1").get_weights()[0],
                                  state["conv_block5.conv1.weight"].numpy().transpose(3, 2, 1, 0))
    assert not np.array_equal(trunk.get_layer("conv_block6_conv1").get_weights()[0],
                              state["conv_block6.conv1.weight"].numpy().transpose(3, 2, 1, 0))
    with pytest.raises(ModelConfigError) as error:
        model_lib.check_options(SPEC.name, "none", "from:conv_block9")
    assert "its blocks are: conv_block1, conv_block2" in _message(error)


@pytest.mark.parametrize("change, fragment", [
    (lambda s: s.pop("conv_block3.bn2.running_var"), "it lacks conv_block3.bn2.running_var"),
    (lambda s: s.update({"fc_transfer.weight": torch.zeros(10, 2048)}),
     "it has fc_transfer.weight, which Cnn14 has not"),
    (lambda s: s.update({"fc1.weight": torch.zeros(1024, 2048)}),
     "fc1.weight is (1024, 2048), not (2048, 2048)"),
])
def test_a_checkpoint_of_another_network_is_refused_naming_the_first_mismatch(
        keras_home, reference, tmp_path, change, fragment):
    state = _state(reference)
    change(state)
    path = tmp_path / "other.pth"
    torch.save({"model": state}, path)
    with pytest.raises(ModelConfigError) as error:
        panns.pretrained_preset(SPEC.name, str(path))
    message = _message(error)
    assert fragment in message and str(path) in message and "Cnn14_mAP=0.431.pth" in message
    assert not (keras_home / "keras_audio_cnn" / "presets").exists() or not os.listdir(
        keras_home / "keras_audio_cnn" / "presets")


def test_a_checkpoint_of_the_16k_network_is_refused_for_the_32k_backbone(keras_home, tmp_path):
    path = tmp_path / "cnn14_16k.pth"
    panns_reference.save_checkpoint(panns_reference.reference(panns.VARIANTS["panns_cnn14_16k"]),
                                    path)
    with pytest.raises(ModelConfigError) as error:
        panns.pretrained_preset(SPEC.name, str(path))
    assert "logmel_extractor.melW is (257, 64), not (513, 64)" in _message(error)


def test_a_checkpoint_trained_on_another_mel_bank_is_refused(keras_home, tmp_path):
    other = panns.Variant(**{**SPEC.__dict__, "fmin": 0.0, "fmax": 16000.0})
    path = tmp_path / "other_mel.pth"
    panns_reference.save_checkpoint(panns_reference.reference(other), path)
    with pytest.raises(ModelConfigError) as error:
        panns.pretrained_preset(SPEC.name, str(path))
    assert "mel filterbank (logmel_extractor.melW) is not panns_cnn14's" in _message(error)


def test_a_checkpoint_with_another_stft_window_is_refused(keras_home, reference, tmp_path):
    state = _state(reference)
    for part in ("real", "imag"):  # a Hamming window instead of Hann
        weight = state[f"spectrogram_extractor.stft.conv_{part}.weight"]
        n = weight.shape[-1]
        hann = 0.5 - 0.5 * torch.cos(2 * torch.pi * torch.arange(n) / n)
        hamming = 0.54 - 0.46 * torch.cos(2 * torch.pi * torch.arange(n) / n)
        weight.mul_(torch.where(hann > 1e-3, hamming / hann.clamp(min=1e-3), 0.0))
    path = tmp_path / "hamming.pth"
    torch.save({"model": state}, path)
    with pytest.raises(ModelConfigError) as error:
        panns.pretrained_preset(SPEC.name, str(path))
    assert "its STFT (spectrogram_extractor) is not the Hann-windowed 1024-point DFT" in \
        _message(error)


def test_the_released_checkpoint_of_another_variant_is_named(keras_home, checkpoint, monkeypatch):
    digest = checkpoints.sha256_of(checkpoint)
    dlm = panns.VARIANTS["panns_cnn14_dlm"]
    monkeypatch.setitem(panns.VARIANTS, dlm.name, panns.Variant(**{**dlm.__dict__,
                                                                   "sha256": digest}))
    with pytest.raises(ModelConfigError) as error:
        panns.pretrained_preset(SPEC.name, str(checkpoint))
    assert "checkpoint of --backbone=panns_cnn14_dlm" in _message(error)


class _Planted:
    """Unpickling this would run `os.system`: a checkpoint with code in it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_holding_code_is_refused_without_running_it(keras_home, reference, tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "planted.pth"
    torch.save({"model": _state(reference), "extra": _Planted(marker)}, path)
    with pytest.raises(ModelConfigError) as error:
        panns.pretrained_preset(SPEC.name, str(path))
    assert "not a PyTorch checkpoint that can be read safely" in _message(error)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all\n"])
def test_a_file_that_is_no_checkpoint_is_one_line(keras_home, tmp_path, content):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(ModelConfigError) as error:
        panns.pretrained_preset(SPEC.name, str(path))
    assert str(path) in _message(error)


@pytest.mark.parametrize("weights, fragment", [
    ("imagenet", "panns_cnn14 has no ImageNet weights"),
    ("missing.pth", "weights file 'missing.pth' does not exist"),
])
def test_wrong_weights_flags_are_one_line(weights, fragment):
    with pytest.raises(ModelConfigError) as error:
        model_lib.check_options(SPEC.name, weights, "all")
    assert fragment in _message(error)


class _Server:
    """A local HTTP server of one folder, standing in for Zenodo."""

    def __init__(self, folder):
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=folder)
        handler.log_message = lambda *args: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _served_variant(monkeypatch, url, checkpoint, sha256=None):
    digest = sha256 or checkpoints.sha256_of(checkpoint)
    spec = panns.Variant(**{**SPEC.__dict__, "sha256": digest})
    monkeypatch.setitem(panns.VARIANTS, SPEC.name, spec)
    monkeypatch.setattr(panns.Variant, "url", property(lambda self: f"{url}/{checkpoint.name}"))
    return spec


def test_the_official_checkpoint_is_downloaded_verified_and_converted_once(
        keras_home, checkpoint, monkeypatch):
    server = _Server(checkpoint.parent)
    try:
        spec = _served_variant(monkeypatch, server.url, checkpoint)
        directory = panns.pretrained_preset(SPEC.name, "audioset")
    finally:
        server.close()
    assert checkpoints.read_preset(directory)["source"] == spec.url
    downloaded = os.path.join(checkpoints.downloads_dir(), spec.file)
    assert checkpoints.sha256_of(downloaded) == spec.sha256
    assert sorted(os.listdir(checkpoints.downloads_dir())) == [spec.file]  # no .part left
    # Offline now, and the preset is found without the network.
    assert panns.pretrained_preset(SPEC.name, "audioset") == directory


def test_a_download_that_is_not_the_published_file_keeps_nothing(
        keras_home, checkpoint, monkeypatch):
    server = _Server(checkpoint.parent)
    try:
        _served_variant(monkeypatch, server.url, checkpoint, sha256="0" * 64)
        with pytest.raises(ModelConfigError) as error:
            panns.pretrained_preset(SPEC.name, "audioset")
    finally:
        server.close()
    assert "is not the published PANNs checkpoint Cnn14_mAP=0.431.pth" in _message(error)
    assert os.listdir(checkpoints.downloads_dir()) == []


def test_offline_the_error_names_the_url_and_where_to_put_the_file(keras_home, monkeypatch):
    monkeypatch.setattr(panns.Variant, "url", property(lambda self: "http://127.0.0.1:9/x.pth"))
    with pytest.raises(ModelConfigError) as error:
        panns.pretrained_preset(SPEC.name, "audioset")
    message = _message(error)
    assert "cannot download the PANNs checkpoint Cnn14_mAP=0.431.pth from http://127.0.0.1:9/x.pth"\
        in message
    assert os.path.join(checkpoints.downloads_dir(), "Cnn14_mAP=0.431.pth") in message
    assert "--weights=PATH" in message and os.listdir(checkpoints.downloads_dir()) == []


def test_the_official_url_and_digests_are_zenodos():
    assert SPEC.url == ("https://zenodo.org/records/3987831/files/Cnn14_mAP%3D0.431.pth"
                        "?download=1")
    assert {v.file for v in panns.VARIANTS.values()} == {
        "Cnn14_mAP=0.431.pth", "Cnn14_16k_mAP=0.438.pth", "Cnn14_DecisionLevelMax_mAP=0.385.pth"}
    assert all(len(v.sha256) == 64 and len(v.md5) == 32 for v in panns.VARIANTS.values())


def _without_torch(script):
    """Runs `script` in a fresh process where `import torch` fails."""
    blocked = textwrap.dedent("""
        import importlib.abc
        import sys

        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] == "torch":
                    raise ModuleNotFoundError("No module named 'torch'")

        sys.meta_path.insert(0, NoTorch())
    """) + textwrap.dedent(script)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True,
                          env=env, timeout=600)


def test_without_torch_the_cache_serves_and_a_new_checkpoint_is_one_line(
        keras_home, checkpoint, tmp_path):
    panns.pretrained_preset(SPEC.name, str(checkpoint))  # converted, with torch, here
    second = tmp_path / "second.pth"
    second.write_bytes(checkpoint.read_bytes() + b"\0")  # another file: not in the cache
    result = _without_torch(f"""
        from keras_audio_cnn.backbones import panns
        from keras_audio_cnn.errors import ModelConfigError
        model, names = panns.tagger("panns_cnn14", {str(checkpoint)!r}, 32000)
        print("tagger", model.output_shape, len(names))
        try:
            panns.pretrained_preset("panns_cnn14", {str(second)!r})
        except ModelConfigError as error:
            print("refused:", error)
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tagger (None, 527) 527" in result.stdout
    assert ("refused: reading PANNs checkpoint Cnn14_mAP=0.431.pth needs PyTorch, which is "
            "not installed: pip install -e \".[audioset]\"") in result.stdout
