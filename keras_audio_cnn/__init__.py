"""Audio classification with ImageNet CNNs on 3-channel log-mel spectrograms.

The model takes raw waveforms: its first layers compute the multi-resolution
log-mel "image" of Palanisamy, Singhania and Yao (2020), so the same saved model
serves training, evaluation and inference on any device.
"""

import os
import sys
import warnings

# oneDNN kernels for TensorFlow's CPU ops. TensorFlow turns them on by itself only
# on CPUs with AVX-512 and newer; this package turns them on for AVX2 CPUs too (what
# they are worth there is not measured on its own; docs/speed.md has the AVX2 rows). This
# takes effect only if TensorFlow is imported after this package, as train.py and
# evaluate.py do; TF_ENABLE_ONEDNN_OPTS=0 in the environment turns them off.
if "tensorflow" in sys.modules and "TF_ENABLE_ONEDNN_OPTS" not in os.environ:
    try:
        from tensorflow.python.util import _pywrap_util_port

        _onednn = _pywrap_util_port.IsMklEnabled()
    except (ImportError, AttributeError):
        _onednn = True  # cannot tell: say nothing
    if not _onednn:
        warnings.warn(
            "keras_audio_cnn was imported after TensorFlow, which left its oneDNN CPU "
            "kernels off in this process (a CPU training step can be about twice as "
            "slow); import keras_audio_cnn before TensorFlow, or start Python with "
            "TF_ENABLE_ONEDNN_OPTS=1", stacklevel=2)
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
