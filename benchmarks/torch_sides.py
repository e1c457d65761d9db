"""The paper's PyTorch pipeline as baseline sides (the only module that imports torch).

Palanisamy, Singhania and Yao's public code (kamalesh0406/Audio-Classification):
preprocessing computes, per clip, three torchaudio `MelSpectrogram`s (n_fft 4410,
windows 25/50/100 ms, hops 10/25/50 ms, 128 HTK bands without filter
normalisation, power 2, centred reflect-padded frames), takes `log(power + 1e-6)`
and resizes each to 128 x 250 with torchvision's `Resize` on a PIL image
(bilinear), then pickles the images; training reads them back and steps a
torchvision DenseNet-201 with `Adam(lr=1e-4, weight_decay=1e-3)` and
cross-entropy. Here the spectrogram is `torch.stft` with torchaudio's defaults
written out (torchaudio is not needed), and the mel filter bank is built once
rather than with every clip's transform, which can only flatter the baseline.

Needs torch and torchvision (`pip install -e ".[bench]"`); the harness skips
these sides with a note when they do not import. On a machine with CUDA the
network runs on the GPU (the per-clip frontend stays on the CPU, as the
reference's preprocessing does).
"""

import numpy as np

from benchmarks import clips
from benchmarks.harness import Side

WINDOWS_MS, HOPS_MS, N_FFT, N_MELS = (25, 50, 100), (10, 25, 50), 4410, 128
IMAGE_SIZE = (128, 250)
EPS = 1e-6


def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filter_bank(sample_rate, n_fft=N_FFT, n_mels=N_MELS):
    """torchaudio's `melscale_fbanks` (HTK scale, no normalisation), `[n_fft // 2 + 1, n_mels]`."""
    all_freqs = np.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    mel_points = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2)
    f_pts = _mel_to_hz(mel_points)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - all_freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return np.maximum(0.0, np.minimum(down, up)).astype("float32")


def _torch_facts(device):
    import torch
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "device": str(device), "threads": torch.get_num_threads(),
            "mkldnn": bool(torch.backends.mkldnn.is_available())}


def _device():
    import torch

    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def _synchronize(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def image_function(sample_rate=clips.SAMPLE_RATE):
    """The reference's per-clip image: `clip [samples] float32 -> [3, 128, 250]`."""
    import torch
    import torchvision
    from PIL import Image

    filters = torch.from_numpy(mel_filter_bank(sample_rate))
    resize = torchvision.transforms.Resize(IMAGE_SIZE)  # PIL input: PIL's bilinear filter
    settings = [(int(round(w * sample_rate / 1000)), int(round(h * sample_rate / 1000)))
                for w, h in zip(WINDOWS_MS, HOPS_MS)]
    windows = {w: torch.hann_window(w) for w, _ in settings}

    def image(clip):
        clip = torch.from_numpy(clip)
        channels = []
        for window, hop in settings:
            spectrum = torch.stft(clip, N_FFT, hop_length=hop, win_length=window,
                                  window=windows[window], center=True, pad_mode="reflect",
                                  normalized=False, onesided=True, return_complex=True)
            power = spectrum.abs().pow(2.0)  # [freqs, frames]
            mel = torch.matmul(power.transpose(0, 1), filters).transpose(0, 1)
            log_mel = np.log(mel.numpy() + EPS)
            channels.append(np.asarray(resize(Image.fromarray(log_mel))))
        return np.stack(channels)

    return image


def reference_frontend(batch=32):
    """The reference's three log-mel spectrograms and PIL resizing, one clip at a time."""
    import torch

    image = image_function()
    waveforms = clips.waveforms(batch)
    info = _torch_facts(torch.device("cpu"))
    return Side(lambda: [image(clip) for clip in waveforms], batch, info)


def _network(model, device):
    import torch
    import torchvision

    torch.manual_seed(0)
    constructor = getattr(torchvision.models, model)
    return constructor(weights=None, num_classes=clips.NUM_CLASSES).to(device)


def reference_train(batch=16, model="densenet201"):
    """One training step of torchvision DenseNet-201 on precomputed 3 x 128 x 250 images.

    `model` names another torchvision model (the smoke preset's quick check).
    """
    import torch

    device = _device()
    network = _network(model, device).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4, weight_decay=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, *IMAGE_SIZE, generator=generator).to(device)
    labels = torch.from_numpy(clips.labels(batch)).to(device)

    def step():
        outputs = network(images)
        loss = loss_fn(outputs, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()  # the reference logs every step's loss; this also waits for the GPU

    return Side(step, batch, dict(_torch_facts(device), model=model))


def reference_inference(batch=32, model="densenet201", mixed=False):
    """Waveforms to probabilities: the per-clip images, then DenseNet-201 in eval mode.

    `mixed`: the network under `torch.autocast` (bfloat16 on a CPU, float16 on a GPU),
    what a user of the paper's float32 code gets by turning autocast on.
    """
    import torch

    device = _device()
    network = _network(model, device).eval()
    image = image_function()
    waveforms = clips.waveforms(batch)
    half = torch.float16 if device.type == "cuda" else torch.bfloat16

    def predict():
        images = torch.from_numpy(np.stack([image(clip) for clip in waveforms])).to(device)
        with torch.no_grad(), torch.autocast(device.type, dtype=half, enabled=mixed):
            probabilities = torch.softmax(network(images).float(), dim=1)
        _synchronize(device)
        return probabilities.cpu().numpy()

    return Side(predict, batch, dict(_torch_facts(device), model=model,
                                     autocast=str(half).split(".")[-1] if mixed else None))
