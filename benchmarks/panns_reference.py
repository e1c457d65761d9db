"""The PANNs authors' own CNN14 code (PyPI `panns-inference` 0.1.1), as the reference of
the Keras port (`keras_audio_cnn.backbones.panns`): for the equivalence tests and for
the speed benchmark's PyTorch side.

    python -m benchmarks.panns_reference     # the port's errors, every variant and length

`panns_inference/__init__.py` imports its `config` module, which downloads AudioSet's
label file with wget at import time; `models_module` loads `panns_inference.models`
(and the `pytorch_utils` it imports) without running the package's `__init__`.
"""

import copy
import importlib
import importlib.util
import sys
import types

import numpy as np


def models_module():
    """`panns_inference.models`, imported without the package's `__init__`."""
    loaded = sys.modules.get("panns_inference")
    if loaded is None:
        spec = importlib.util.find_spec("panns_inference")
        if spec is None:
            raise ImportError("panns-inference is not installed: pip install -e \".[test]\"")
        package = types.ModuleType("panns_inference")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["panns_inference"] = package
    return importlib.import_module("panns_inference.models")


def reference(spec, classes=527, seed=0, random_statistics=True):
    """The reference network of a `panns.Variant`, in eval mode, with random weights.

    PyTorch's own initialisation leaves every BatchNorm an identity (weight 1, bias 0,
    mean 0, variance 1), under which a port that mixed up their parameters would still
    agree, and under which a random network's outputs hardly depend on its input. With
    `random_statistics`, each BatchNorm gets a random weight and bias, and its running
    statistics are those of its inputs on a few generated clips (tones and noise), as
    a trained network's are of its data: then its embedding and outputs follow the
    input, and every parameter shows in them.
    """
    import torch

    torch.manual_seed(seed)
    network = getattr(models_module(), spec.architecture)(
        sample_rate=spec.sample_rate, window_size=spec.fft, hop_size=spec.hop,
        mel_bins=spec.mel_bins, fmin=spec.fmin, fmax=spec.fmax, classes_num=classes)
    if random_statistics:
        generator = torch.Generator().manual_seed(seed + 1)
        batch_norms = [m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        with torch.no_grad():
            for module in batch_norms:
                n = module.num_features
                module.weight.copy_(1 + 0.2 * torch.randn(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
                module.reset_running_stats()
                module.momentum = None  # a cumulative average over the calibration batch
            rng = np.random.default_rng(seed)
            t = np.arange(spec.sample_rate) / spec.sample_rate
            clips = [0.3 * np.sin(2 * np.pi * f * t) for f in rng.uniform(100, 4000, 4)]
            clips += [rng.uniform(0.01, 0.3) * rng.standard_normal(len(t)) for _ in range(4)]
            network.train()
            network.spec_augmenter.eval()  # calibrate on the clips themselves
            network(torch.from_numpy(np.stack(clips).astype("float32")))
            for module in batch_norms:
                module.momentum = 0.1
    return network.eval()


def save_checkpoint(network, path, **extra):
    """Saves `network` as the released checkpoints are saved: `{"model": state_dict}`."""
    import torch

    torch.save({"model": network.state_dict(), **extra}, path)


def pure(sample_rate, seconds):
    """A tone and a chirp up to near Nyquist, digital: `[2, samples]` float64."""
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    top = 0.45 * sample_rate
    chirp = 0.3 * np.sin(2 * np.pi * (100 * t + (top - 100) / (2 * seconds) * t**2))
    return np.stack([0.5 * np.sin(2 * np.pi * 440.0 * t), chirp])


def signals(sample_rate, seconds):
    """Real-looking clips: a tone, noise and a chirp over a -80 dB noise floor (as every
    recording has), and digital silence: `[4, samples]` float32."""
    rng = np.random.default_rng(int(seconds * 10))
    tone, chirp = pure(sample_rate, seconds)
    noise = 0.1 * rng.standard_normal(len(tone))
    floor = 1e-4 * rng.standard_normal((3, len(tone)))
    return np.concatenate([np.stack([tone, noise, chirp]) + floor,
                           np.zeros((1, len(tone)))]).astype("float32")


def reference_outputs(network, clips):
    """The reference's outputs (float32, as users run it), and its log-mel image and `bn0`
    output from its frontend run in float64 (the exact values), `[batch, bands, frames]`."""
    import torch

    frontend = copy.deepcopy(torch.nn.ModuleList(
        [network.spectrogram_extractor, network.logmel_extractor, network.bn0])).double()
    with torch.no_grad():
        out = network(torch.from_numpy(clips))
        logmel = frontend[1](frontend[0](torch.from_numpy(clips.astype("float64"))))
        normalized = frontend[2](logmel.transpose(1, 3)).transpose(1, 3)
    out = {key: value.numpy() for key, value in out.items()}
    out["logmel"] = logmel.numpy()[:, 0].transpose(0, 2, 1)  # [batch, 1, frames, bands]
    out["normalized"] = normalized.numpy()[:, 0].transpose(0, 2, 1)
    return out


def keras_outputs(model, spec, clips):
    """The same quantities of a Keras tagger from `panns.tagger` (or `panns.build`)."""
    import keras

    from keras_audio_cnn.backbones import panns

    layers = [model.get_layer("logmel_image").output, model.get_layer("bn0").output,
              model.get_layer("dropout").input, model.output]
    logmel, normalized, embedding, logits = [
        x.numpy() for x in keras.Model(model.input, layers)(clips, training=False)]
    out = {"logmel": logmel[..., 0], "normalized": normalized[..., 0], "embedding": embedding,
           "clipwise_output": 1 / (1 + np.exp(-logits.astype("float64")))}
    if spec.decision_level:
        out["framewise_output"] = panns.framewise_model(model, spec)(clips).numpy()
    return out


def errors(ours, reference, near_db=70.0):
    """The port's largest errors: log-mel dB within `near_db` of each clip's peak and
    everywhere, probabilities, the embedding relative to its norm."""
    decibels = reference["logmel"]
    near = decibels >= decibels.max(axis=(1, 2), keepdims=True) - near_db
    image = np.abs(ours["logmel"] - decibels)
    found = {"logmel_db_near_peak": float(image[near].max()), "logmel_db": float(image.max()),
             "clipwise": float(np.abs(ours["clipwise_output"] -
                                      reference["clipwise_output"]).max())}
    if "framewise_output" in ours:
        found["framewise"] = float(np.abs(ours["framewise_output"] -
                                          reference["framewise_output"]).max())
    else:
        difference = np.linalg.norm(ours["embedding"] - reference["embedding"], axis=-1)
        found["embedding_relative"] = float(
            (difference / np.linalg.norm(reference["embedding"], axis=-1)).max())
    return found


def main():
    """Prints the port's errors against the reference, per variant and clip length, on
    `signals` (batch 4), with random weights converted through `--weights=PATH.pth`."""
    import os
    import tempfile

    import keras_audio_cnn  # noqa: F401  (before TensorFlow)
    from keras_audio_cnn.backbones import panns

    with tempfile.TemporaryDirectory() as work:
        os.environ["KERAS_HOME"] = work
        for seed, (name, spec) in enumerate(panns.VARIANTS.items()):
            network = reference(spec, seed=seed)
            path = os.path.join(work, f"{name}.pth")
            save_checkpoint(network, path)
            for seconds in (1, 5, 10):
                model, _ = panns.tagger(name, path, int(seconds * spec.sample_rate))
                clips = signals(spec.sample_rate, seconds)
                found = errors(keras_outputs(model, spec, clips),
                               reference_outputs(network, clips))
                print(name, f"{seconds} s", " ".join(f"{k} {v:.2e}" for k, v in found.items()),
                      flush=True)


if __name__ == "__main__":
    main()
