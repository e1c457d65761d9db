"""keras_audio_cnn: ImageNet CNNs on multi-resolution log-mel spectrograms."""

import setuptools

# The site is tested with MkDocs 1.6; a new major version may change its configuration.
# mkdocstrings' Python handler reads the docstrings from the source, importing nothing.
DOCS = ["mkdocs>=1.6,<2", "mkdocs-material", "mkdocstrings[python]"]
_MEDIAPIPE = "mediapipe>=1.2.3; sys_platform != 'darwin' or platform_machine == 'arm64'"

setuptools.setup(
    name="keras_audio_cnn",
    version="0.1.0",
    description=(
        "Audio classification with keras.applications CNNs on 3-channel "
        "log-mel spectrograms, fed by TFDS builders"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=setuptools.find_packages(
        include=["keras_audio_cnn", "keras_audio_cnn.*", "tfds_builders", "tfds_builders.*"]
    ),
    # The TFDS convention keeps each dataset's metadata in files beside its builder.
    package_data={
        "tfds_builders": ["*/*.tsv", "*/*.txt", "*/*.md", "*/*.bib", "*/*/*.txt", "*/*/*.md"],
        # AudioSet's class list (CC BY 4.0, attribution in its README.md).
        "keras_audio_cnn": ["backbones/audioset/*.csv", "backbones/audioset/*.md"],
    },
    install_requires=[
        "tensorflow>=2.20",
        "keras>=3.6",
        "tensorflow-datasets>=4.9.7",
        "numpy",
        "librosa>=0.10",
        "soundfile>=0.12",
        "soxr",  # predict.py resamples in blocks (soxr.ResampleStream); librosa installs it too
        "tqdm",  # predict.py's progress bar; tensorflow-datasets installs it too
        "absl-py",
        "matplotlib",  # evaluate.py's report and gradient-map figures
        "tensorboard",  # TensorFlow 2.21 no longer installs it; training logs to it
        # tensorflow-datasets 4.9.10 imports it without declaring it
        # (tensorflow/datasets#11212).
        "importlib_resources",
    ],
    extras_require={
        # dill: tfds.testing imports it; pydub: TFDS catalog audio datasets (tests use
        # spoken_digit) encode their WAV files with it; ray: tests/test_ray.py.
        # ai-edge-litert, tf2onnx, onnxruntime: the .tflite and ONNX exports run in tests;
        # hypothesis: tests/test_properties.py. mediapipe: its AudioClassifier runs the .tflite
        # export (tests/test_mediapipe.py); 1.2.3 needs no protobuf, so TensorFlow's stays,
        # and has no wheel for Intel macOS.
        # torch, panns-inference, torchlibrosa: the PANNs port is compared with the authors'
        # own model code (tests/test_panns.py). torch is pinned to the CPU build this
        # project's machines hold; a range would make pip fetch a several-GB CUDA build.
        # The docs extra too: tests/test_docs.py builds the site with mkdocs --strict.
        "test": ["pytest", "pytest-xdist", "hypothesis", "dill", "pydub", "ray>=2.9",
                 "ai-edge-litert", "tf2onnx", "onnxruntime", "torch==2.13.0",
                 "panns-inference==0.1.1", "torchlibrosa==0.1.0", _MEDIAPIPE, *DOCS],
        # The documentation site (mkdocs.yml over docs/): mkdocs serve, mkdocs build.
        "docs": DOCS,
        "gpu": ["tensorflow[and-cuda]>=2.20"],
        # --backbone=panns_*: reading PANNs' .pth checkpoints once (torch.load with
        # weights_only=True); the converted Keras weights are cached.
        "audioset": ["torch>=2.5"],
        # train.py --ray_address: the grid of models as tasks of a Ray cluster.
        "ray": ["ray>=2.9"],
        # export.py --format=tflite models run in LiteRT; --format=onnx needs tf2onnx
        # (1.17 installs beside TensorFlow 2.21 without changing its protobuf).
        "litert": ["ai-edge-litert"],
        "onnx": ["tf2onnx", "onnxruntime"],
        # MediaPipe's AudioClassifier classifying with a --format=tflite file (its LiteRT
        # metadata is written without MediaPipe).
        "mediapipe": [_MEDIAPIPE],
        # python -m benchmarks: the paper's PyTorch pipeline as the baseline sides
        # (benchmarks/torch_sides.py). Exact pins: a range admitting a newer torch makes
        # pip download a several-GB CUDA build. torch 2.14.1 needs setuptools >= 77.
        "bench": ["torch==2.14.1", "torchvision==0.29.1"],
    },
)
