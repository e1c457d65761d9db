"""Audio classification with ImageNet CNNs on 3-channel log-mel spectrograms.

The model takes raw waveforms: its first layers compute the multi-resolution
log-mel "image" of Palanisamy, Singhania and Yao (2020), so the same saved model
serves training, evaluation and inference on any device.
"""

__version__ = "0.1.0"
