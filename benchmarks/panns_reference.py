"""The PANNs authors' own CNN14 code (PyPI `panns-inference` 0.1.1), as the reference of
the Keras port (`keras_audio_cnn.backbones.panns`): for the equivalence tests and for
the speed benchmark's PyTorch side.

`panns_inference/__init__.py` imports its `config` module, which downloads AudioSet's
label file with wget at import time; `models_module` loads `panns_inference.models`
(and the `pytorch_utils` it imports) without running the package's `__init__`.
"""

import importlib
import importlib.util
import sys
import types


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
    import numpy as np
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
