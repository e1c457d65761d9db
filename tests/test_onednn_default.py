"""The package's oneDNN default, and the warning when it comes too late to apply.

Each case is a fresh interpreter; a stand-in `tensorflow` module plays a TensorFlow
imported before the package (with oneDNN off, as on AVX2 CPUs), so no case waits
for TensorFlow to load.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A TensorFlow already imported, whose oneDNN kernels are `ONEDNN`.
FAKE_TENSORFLOW = """
import sys, types
port = types.ModuleType("tensorflow.python.util._pywrap_util_port")
port.IsMklEnabled = lambda: ONEDNN
for name in ("tensorflow", "tensorflow.python", "tensorflow.python.util"):
    sys.modules[name] = types.ModuleType(name)
sys.modules["tensorflow.python.util._pywrap_util_port"] = port
sys.modules["tensorflow.python.util"]._pywrap_util_port = port
"""


def _python(code, **env):
    environment = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    environment.update(env)
    return subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True,
                          text=True, cwd=ROOT, env=environment, timeout=120)


def test_imported_first_the_package_turns_onednn_on():
    result = _python("import os, keras_audio_cnn; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1"]
    assert "imported after TensorFlow" not in result.stderr


def test_imported_after_tensorflow_that_left_onednn_off_it_warns():
    late = FAKE_TENSORFLOW.replace("ONEDNN", "False") + "import keras_audio_cnn"
    result = _python(late)
    assert result.returncode == 0, result.stderr
    assert "keras_audio_cnn was imported after TensorFlow" in result.stderr
    # oneDNN on anyway (a CPU where TensorFlow turns it on), or a choice made in the
    # environment: nothing to say.
    on = FAKE_TENSORFLOW.replace("ONEDNN", "True") + "import keras_audio_cnn"
    assert "imported after TensorFlow" not in _python(on).stderr
    assert "imported after TensorFlow" not in _python(late, TF_ENABLE_ONEDNN_OPTS="0").stderr
