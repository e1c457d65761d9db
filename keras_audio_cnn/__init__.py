"""Audio classification with ImageNet CNNs on 3-channel log-mel spectrograms.

The model takes raw waveforms: its first layers compute the multi-resolution
log-mel "image" of Palanisamy, Singhania and Yao (2020), so the same saved model
serves training, evaluation and inference on any device.
"""

import os

# oneDNN kernels for TensorFlow's CPU ops. TensorFlow turns them on by itself only
# on CPUs with AVX-512 and newer; on an AVX2 CPU they made a DenseNet201 training
# step several times faster (see the train-step benchmark in README.md). This
# takes effect only if TensorFlow is imported after this package, as train.py and
# evaluate.py do; TF_ENABLE_ONEDNN_OPTS=0 in the environment turns them off.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
