"""PANNs CNN14 (Kong et al. 2020) in Keras: its log-mel frontend, its network, its weights.

The AudioSet-trained CNN14 networks of "PANNs: Large-Scale Pretrained Audio Neural
Networks for Audio Pattern Recognition" (IEEE/ACM TASLP 2020), as released by the
authors (github.com/qiuqiangkong/audioset_tagging_cnn, checkpoints in Zenodo record
3987831). Each variant works only with the input it was trained on, so the variant
declares it, and the model computes it from the waveform:

- frontend: the checkpoint's rate (32 kHz, or 16 kHz for `panns_cnn14_16k`); an STFT
  with a periodic Hann window of `fft` samples every `hop` samples, centred with
  reflect padding (torchlibrosa's `Spectrogram`, librosa's `stft`), computed in
  float64; power `re^2 + im^2`, float32 from there; librosa's Slaney mel filterbank
  (`librosa.filters.mel`, 64 bands from `fmin` to `fmax`; the checkpoint's own `melW`);
  `10 log10(max(power, 1e-10))` (ref 1.0, amin 1e-10, no top_db);
  then `bn0`, a BatchNorm over the mel bands whose statistics come with the weights;
- network: six blocks of two 3x3 convolutions (no bias) with BatchNorm and ReLU, 2x2
  average pooling after the first five, dropout 0.2 after each; the mean over the
  mel axis; then
  - `Cnn14`: the maximum plus the mean over time, dropout 0.5, `fc1` (2048, ReLU):
    the clip's embedding;
  - `Cnn14_DecisionLevelMax`: max pooling plus average pooling over 3 time steps
    (stride 1, PyTorch's zero padding counted in the average), dropout 0.5, `fc1` on
    every time step: the embedding of each of `frames // 32` segments, whose
    per-segment outputs the clip output takes the maximum of;
- head: dropout (0.5, PANNs' transfer recipe), then `predictions`, a Dense layer
  with 527 AudioSet classes for tagging (sigmoid probabilities) or the dataset's
  classes for fine-tuning (the `fc_audioset` layer replaced, as `Transfer_Cnn14`
  does).

Images follow the project's `[batch, bands, frames, channels]` layout (the
augmentations, saliency maps and reports read it): one channel, 64 bands, frames
along the width. PyTorch's `[batch, 1, frames, bands]` convolutions are the same
with their kernels transposed (`checkpoint_to_keras`).

Every layer is a Keras built-in layer or operation, so a saved model loads with
`keras.models.load_model` alone, without this package.
"""

import csv
import dataclasses
import os

import keras
import librosa
import numpy as np
import scipy.signal

from keras_audio_cnn import devices, frontend
from keras_audio_cnn.backbones import checkpoints
from keras_audio_cnn.errors import ModelConfigError

AUDIOSET_CLASSES = 527
# The length of an AudioSet clip, which the checkpoints were trained on (shorter clips
# zero-padded to it): the window of the taggers that need no training.
AUDIOSET_CLIP_SECONDS = 10.0
# PANNs' SpecAugment (their `SpecAugmentation`): 2 time stripes of up to 64 frames
# and 2 frequency stripes of up to 8 bands.
SPEC_AUGMENT = dict(time_masks=2, time_width=64, freq_masks=2, freq_width=8)
BLOCK_CHANNELS = (64, 128, 256, 512, 1024, 2048)
EMBEDDING_SIZE = 2048
# The time axis shrinks 32 times over the five pooled blocks.
TIME_REDUCTION = 32
MIN_POWER = 1e-10  # amin of torchlibrosa's power_to_db
FLOOR_DB = 10.0 * np.log10(MIN_POWER)  # what digital silence gives: -100 dB
ZENODO = "https://zenodo.org/records/3987831/files"
_BN_EPSILON = 1e-5  # PyTorch's BatchNorm2d and BatchNorm1d default
_BN_MOMENTUM = 0.9  # PyTorch's momentum 0.1: the weight of each new batch


@dataclasses.dataclass(frozen=True)
class Variant:
    """One released CNN14 checkpoint: its architecture, input and file.

    `sha256` and `bytes` are those of the file in Zenodo record 3987831 (Zenodo
    publishes its MD5: `md5`).
    """

    name: str  # the --backbone name
    architecture: str  # "Cnn14" or "Cnn14_DecisionLevelMax", the class in PANNs' models.py
    sample_rate: int
    fft: int  # window and FFT length, samples
    hop: int
    fmin: float
    fmax: float
    file: str  # the checkpoint's name in the Zenodo record
    sha256: str
    md5: str
    bytes: int
    mel_bins: int = 64

    @property
    def url(self):
        return f"{ZENODO}/{self.file.replace('=', '%3D')}?download=1"

    @property
    def decision_level(self):
        return self.architecture == "Cnn14_DecisionLevelMax"

    @property
    def frames_per_second(self):
        return self.sample_rate / self.hop


VARIANTS = {
    v.name: v
    for v in (
        Variant("panns_cnn14", "Cnn14", 32000, 1024, 320, 50.0, 14000.0, "Cnn14_mAP=0.431.pth",
                sha256="0dc499e40e9761ef5ea061ffc77697697f277f6a960894903df3ada000e34b31",
                md5="541141fa2ee191a88f24a3219fff024e", bytes=327428481),
        Variant("panns_cnn14_16k", "Cnn14", 16000, 512, 160, 50.0, 8000.0,
                "Cnn14_16k_mAP=0.438.pth",
                sha256="e2ee543a27919542c2ea03eabaa70b24dcd4e6c8e05621de6b67a94e4c5058e6",
                md5="362fc5ff18f1d6ad2f6d464b45893f2c", bytes=358668570),
        Variant("panns_cnn14_dlm", "Cnn14_DecisionLevelMax", 32000, 1024, 320, 50.0, 14000.0,
                "Cnn14_DecisionLevelMax_mAP=0.385.pth",
                sha256="dd3b4043a87d4ec13df8082c0fcfee3fb5084151808e47e060987a95eabdd142",
                md5="70539c43c18b6a289b3199c503a82c5a", bytes=327428481),
    )
}


def variant(name):
    """The `Variant` of a backbone name; `ModelConfigError` listing them otherwise."""
    if name not in VARIANTS:
        raise ModelConfigError(f"unknown PANNs backbone {name!r}; choose one of: "
                               f"{', '.join(VARIANTS)}")
    return VARIANTS[name]


def stft_frames(num_samples, hop):
    """Frames of the centred STFT: `1 + num_samples // hop` (padding `fft // 2` at each
    end, an even FFT length)."""
    return 1 + num_samples // hop


def check_clip(spec, sample_rate, num_samples):
    """Raises `frontend.ClipSettingsError` unless CNN14 takes these clips."""
    if sample_rate != spec.sample_rate:
        raise frontend.ClipSettingsError(
            f"{spec.name} takes audio at {spec.sample_rate} Hz, the rate its checkpoint was "
            f"trained at, not {sample_rate} Hz; prepare the data at {spec.sample_rate} Hz "
            f"(train.py picks that config of the dataset by itself)")
    shortest = (TIME_REDUCTION - 1) * spec.hop  # 32 frames, one after five poolings
    if num_samples < max(shortest, spec.fft // 2 + 1):
        raise frontend.ClipSettingsError(
            f"clips of {num_samples} samples are too short for {spec.name}: it needs at "
            f"least {shortest} samples ({shortest / spec.sample_rate:.2f} s, {TIME_REDUCTION} "
            "STFT frames) to keep a time step after its five poolings")


def mel_matrix(spec):
    """`[fft // 2 + 1, 64]`: librosa's Slaney-scale, Slaney-normalised mel filterbank, as
    torchlibrosa's `LogmelFilterBank` (and the checkpoints' `melW`) holds it."""
    return librosa.filters.mel(sr=spec.sample_rate, n_fft=spec.fft, n_mels=spec.mel_bins,
                               fmin=spec.fmin, fmax=spec.fmax).T.astype("float32")


def windowed_dft(fft):
    """`(Re, Im)`, each `[fft // 2 + 1, fft]`: the DFT of a periodic-Hann-windowed frame,
    as torchlibrosa's `STFT` holds it (its `conv_real`, `conv_imag` kernels)."""
    hann = scipy.signal.get_window("hann", fft, fftbins=True)
    angle = 2 * np.pi * np.outer(np.arange(fft // 2 + 1), np.arange(fft)) / fft
    return np.cos(angle) * hann, -np.sin(angle) * hann


def band_centres_hz(spec):
    """The centre frequency of each mel band (for the pitch-shift augmentation)."""
    return librosa.mel_frequencies(spec.mel_bins + 2, fmin=spec.fmin, fmax=spec.fmax)[1:-1]


def log_mel_image(waveform, spec, num_samples):
    """The frontend's layers on a `[batch, num_samples]` waveform: `[batch, 64, frames, 1]`
    log-mel power in dB, the output of the layer `frontend.IMAGE_LAYER`."""
    frames = stft_frames(num_samples, spec.hop)
    # The STFT in float64: in float32 its rounding is of the size of the quietest bands
    # of a clean tone (its far bands, 100 dB below its peak, are off by 0.02 dB, and
    # the authors' float32 code is off by 1e-3 dB 70 dB below the peak). Float64
    # costs little beside the network; its power is float32 from here on.
    real, imag = keras.ops.stft(keras.ops.cast(waveform, "float64"), spec.fft, spec.hop,
                                spec.fft, window="hann", center=True)
    power = keras.layers.Add(name="stft_power", dtype="float32")(
        [keras.ops.square(real), keras.ops.square(imag)])
    mel = keras.layers.Dense(spec.mel_bins, use_bias=False, trainable=False,
                             name="mel_filterbank", dtype="float32")
    mel.build((None, frames, spec.fft // 2 + 1))
    mel.kernel.assign(mel_matrix(spec))
    decibels = 10.0 * keras.ops.log10(keras.ops.maximum(mel(power), MIN_POWER))
    bands_first = keras.layers.Permute((2, 1), name="logmel_bands_first", dtype="float32")(
        decibels)
    return keras.layers.Reshape((spec.mel_bins, frames, 1), name=frontend.IMAGE_LAYER,
                                dtype="float32")(bands_first)


def _batch_norm(name, axis=-1, **kwargs):
    return keras.layers.BatchNormalization(axis=axis, epsilon=_BN_EPSILON,
                                           momentum=_BN_MOMENTUM, name=name, **kwargs)


def network(spec, num_samples):
    """The nested model after `bn0`: `[batch, 64, frames, 1]` -> the clip embedding
    `[batch, 2048]` (Cnn14), or the segment embeddings `[batch, frames // 32, 2048]`
    (Cnn14_DecisionLevelMax)."""
    image = keras.Input(shape=(spec.mel_bins, stft_frames(num_samples, spec.hop), 1),
                        name="normalized_logmel")
    x = image
    for number, channels in enumerate(BLOCK_CHANNELS, 1):
        block = f"conv_block{number}"
        for conv in (1, 2):
            x = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False,
                                    kernel_initializer="glorot_uniform",
                                    name=f"{block}_conv{conv}")(x)
            x = _batch_norm(f"{block}_bn{conv}")(x)
            x = keras.layers.ReLU(name=f"{block}_relu{conv}")(x)
        if number < len(BLOCK_CHANNELS):
            x = keras.layers.AveragePooling2D(2, name=f"{block}_pool")(x)
        x = keras.layers.Dropout(0.2, name=f"{block}_dropout")(x)
    x = keras.ops.mean(x, axis=1)  # over the mel bands: [batch, time, 2048]
    if spec.decision_level:
        # PyTorch's avg_pool1d(padding=1) counts the zero padding in its average.
        average = keras.layers.AveragePooling1D(3, strides=1, name="time_avg_pool")(
            keras.layers.ZeroPadding1D(1, name="time_zero_pad")(x))
        peak = keras.layers.MaxPooling1D(3, strides=1, padding="same", name="time_max_pool")(x)
        x = keras.layers.Add(name="time_pool")([peak, average])
    else:
        x = keras.layers.Add(name="time_pool")([
            keras.layers.GlobalMaxPooling1D(name="time_max")(x),
            keras.layers.GlobalAveragePooling1D(name="time_mean")(x)])
    x = keras.layers.Dropout(0.5, name="fc1_dropout")(x)
    embedding = keras.layers.Dense(EMBEDDING_SIZE, activation="relu",
                                   kernel_initializer="glorot_uniform", name="fc1")(x)
    return keras.Model(image, embedding, name=spec.architecture.lower())


def build(spec, num_classes, num_samples, *, dropout=0.5, dtype_policy="float32"):
    """The waveform-to-logits model of a variant, with random weights.

    Layers: "waveform", the frontend ending in "logmel_image", "bn0", the nested
    network (`network`), "dropout", "predictions" and, for the decision-level
    variant, "pool" (the maximum of the segments' logits: the clip's logits).
    """
    with devices.dtype_policy(dtype_policy):
        # Layers.
        bn0 = _batch_norm("bn0", axis=1, dtype="float32")
        trunk = network(spec, num_samples)
        drop = keras.layers.Dropout(dropout, name="dropout")
        predictions = keras.layers.Dense(num_classes, kernel_initializer="glorot_uniform",
                                         name="predictions", dtype="float32")

        # Functional graph.
        waveform = keras.Input(shape=(num_samples,), name="waveform")
        image = log_mel_image(waveform, spec, num_samples)
        logits = predictions(drop(trunk(bn0(image))))
        if spec.decision_level:
            logits = keras.layers.GlobalMaxPooling1D(name="pool", dtype="float32")(logits)
        return keras.Model(waveform, logits, name=f"{spec.name}_audio")


def expected_keys():
    """{key: function of a `Variant` giving its PyTorch shape} of a CNN14 checkpoint's
    state dict (both architectures have the same keys), BatchNorm counters aside."""
    keys = {}
    stft = "spectrogram_extractor.stft"
    keys[f"{stft}.conv_real.weight"] = lambda s: (s.fft // 2 + 1, 1, s.fft)
    keys[f"{stft}.conv_imag.weight"] = lambda s: (s.fft // 2 + 1, 1, s.fft)
    keys["logmel_extractor.melW"] = lambda s: (s.fft // 2 + 1, s.mel_bins)
    for name in ("weight", "bias", "running_mean", "running_var"):
        keys[f"bn0.{name}"] = lambda s: (s.mel_bins,)
    previous = 1
    for number, channels in enumerate(BLOCK_CHANNELS, 1):
        for conv, inputs in ((1, previous), (2, channels)):
            keys[f"conv_block{number}.conv{conv}.weight"] = (
                lambda s, c=channels, i=inputs: (c, i, 3, 3))
            for name in ("weight", "bias", "running_mean", "running_var"):
                keys[f"conv_block{number}.bn{conv}.{name}"] = lambda s, c=channels: (c,)
        previous = channels
    keys["fc1.weight"] = lambda s: (EMBEDDING_SIZE, EMBEDDING_SIZE)
    keys["fc1.bias"] = lambda s: (EMBEDDING_SIZE,)
    keys["fc_audioset.weight"] = lambda s: (AUDIOSET_CLASSES, EMBEDDING_SIZE)
    keys["fc_audioset.bias"] = lambda s: (AUDIOSET_CLASSES,)
    return keys


def _bn_weights(state, prefix):
    return [state[f"{prefix}.{name}"] for name in ("weight", "bias", "running_mean", "running_var")]


def checkpoint_to_keras(model, state, spec, head=True):
    """Sets a model from `build` to a CNN14 state dict (names -> numpy arrays).

    The convolution kernels `[out, in, time, band]` become Keras's `[band, time, in,
    out]` (the image is `[bands, frames]`), Linear weights are transposed, and the mel
    filterbank is the checkpoint's own `melW`. With `head`, `fc_audioset` becomes
    "predictions" (527 classes); otherwise "predictions" keeps its initialisation.
    """
    trunk = model.get_layer(spec.architecture.lower())
    model.get_layer("mel_filterbank").set_weights([state["logmel_extractor.melW"]])
    model.get_layer("bn0").set_weights(_bn_weights(state, "bn0"))
    for number in range(1, len(BLOCK_CHANNELS) + 1):
        for conv in (1, 2):
            prefix = f"conv_block{number}"
            kernel = state[f"{prefix}.conv{conv}.weight"].transpose(3, 2, 1, 0)
            trunk.get_layer(f"{prefix}_conv{conv}").set_weights([kernel])
            trunk.get_layer(f"{prefix}_bn{conv}").set_weights(
                _bn_weights(state, f"{prefix}.bn{conv}"))
    trunk.get_layer("fc1").set_weights([state["fc1.weight"].T, state["fc1.bias"]])
    if head:
        model.get_layer("predictions").set_weights(
            [state["fc_audioset.weight"].T, state["fc_audioset.bias"]])


def framewise_model(model, spec):
    """The decision-level variant's per-frame probabilities: a model sharing `model`'s
    layers, from waveforms to `[batch, frames, classes]` sigmoid probabilities, each
    segment's repeated over its 32 STFT frames and the last one over the frames
    after the last whole segment (PANNs' `Interpolator` and `pad_framewise_output`)."""
    if not spec.decision_level:
        raise ModelConfigError(f"{spec.name} has no framewise output; use panns_cnn14_dlm")
    segments = model.get_layer("pool").input  # [batch, segments, classes] logits
    frames = stft_frames(model.input_shape[-1], spec.hop)
    probabilities = keras.layers.Activation("sigmoid", name="segment_probabilities",
                                            dtype="float32")(segments)
    upsampled = keras.layers.UpSampling1D(TIME_REDUCTION, name="frame_probabilities",
                                          dtype="float32")(probabilities)
    missing = frames - TIME_REDUCTION * segments.shape[1]
    if missing:
        last = keras.layers.Cropping1D((segments.shape[1] - 1, 0), name="last_segment",
                                       dtype="float32")(probabilities)
        tail = keras.layers.UpSampling1D(missing, name="last_segment_frames",
                                         dtype="float32")(last)
        upsampled = keras.layers.Concatenate(axis=1, name="framewise", dtype="float32")(
            [upsampled, tail])
    return keras.Model(model.input, upsampled, name=f"{model.name}_framewise")


# The family's interface (see `backbones`).

NEEDS_IMAGE_STATISTICS = False  # bn0 normalises, with the checkpoint's statistics


def sample_rate(name):
    """The rate a variant takes: its checkpoint's."""
    return variant(name).sample_rate


def _weights_file(name, weights):
    """None (random), "audioset", or the path of an existing file, checked."""
    fix = "pass --weights=audioset (the official checkpoint), none, or the path of a .pth file"
    if weights in (None, "none"):
        return None
    if weights == "audioset":
        return weights
    if weights == "imagenet":
        raise ModelConfigError(f"{name} has no ImageNet weights; {fix}")
    if os.path.isdir(weights):
        raise ModelConfigError(f"--weights={weights} is a directory; {fix}")
    if not os.path.isfile(weights):
        raise ModelConfigError(f"weights file {weights!r} does not exist; {fix}")
    return weights


def check_weights(name, weights):
    """Raises `ModelConfigError` for a variant or weights `build_model` would refuse."""
    variant(name)
    _weights_file(name, weights)


def probe(name):
    """A random-weight network of a variant, to read its block and layer names from."""
    spec = variant(name)
    return network(spec, spec.sample_rate)


def _check_state(state, spec, path):
    """Refuses a state dict that is not a checkpoint of `spec`, naming the first mismatch."""
    expected = {key: shape(spec) for key, shape in expected_keys().items()}
    found = {key: value for key, value in state.items()
             if not key.endswith(".num_batches_tracked")}
    for key in sorted(set(expected) | set(found)):
        problem = None
        if key not in found:
            problem = f"it lacks {key}"
        elif key not in expected:
            problem = f"it has {key}, which {spec.architecture} has not"
        elif tuple(found[key].shape) != expected[key]:
            problem = f"{key} is {tuple(found[key].shape)}, not {expected[key]}"
        if problem:
            raise ModelConfigError(
                f"{path} is not a {spec.architecture} checkpoint of {spec.name} ({problem}); "
                f"pass {spec.file} (Zenodo record 3987831) or a checkpoint of the same "
                "network trained on its input")
    real = np.asarray(state["spectrogram_extractor.stft.conv_real.weight"], "float64")[:, 0]
    imag = np.asarray(state["spectrogram_extractor.stft.conv_imag.weight"], "float64")[:, 0]
    expected_real, expected_imag = windowed_dft(spec.fft)
    if not (np.allclose(real, expected_real, atol=1e-5)
            and np.allclose(imag, expected_imag, atol=1e-5)):
        raise ModelConfigError(
            f"{path}: its STFT (spectrogram_extractor) is not the Hann-windowed "
            f"{spec.fft}-point DFT of {spec.name}: it was trained on another input")
    mel = np.asarray(state["logmel_extractor.melW"], "float64")
    if not np.allclose(mel, mel_matrix(spec), rtol=1e-3, atol=1e-6):
        raise ModelConfigError(
            f"{path}: its mel filterbank (logmel_extractor.melW) is not {spec.name}'s "
            f"({spec.mel_bins} Slaney bands of {spec.fmin:g}-{spec.fmax:g} Hz at "
            f"{spec.sample_rate} Hz): it was trained on another input")


def convert(spec, path, source):
    """Reads the checkpoint at `path`, checks it and caches it as Keras weights; returns
    the preset folder (`checkpoints.preset_dir`)."""
    digest = checkpoints.sha256_of(path)
    for other in VARIANTS.values():
        if digest == other.sha256 and other is not spec:
            raise ModelConfigError(
                f"{path} is {other.file}, the checkpoint of --backbone={other.name}, not of "
                f"{spec.name}; pass --backbone={other.name}, or {spec.file} for {spec.name}")
    directory = checkpoints.preset_dir(spec.name, digest)
    if checkpoints.read_preset(directory) is not None:
        return directory
    state = checkpoints.read_state_dict(path, f"PANNs checkpoint {spec.file}")
    _check_state(state, spec, path)
    tagger = build(spec, AUDIOSET_CLASSES, spec.sample_rate)
    checkpoint_to_keras(tagger, state, spec)
    checkpoints.write_preset(directory, tagger, {
        "backbone": spec.name, "architecture": spec.architecture, "source": source,
        "sha256": digest, "class_names": audioset_class_names(),
        "frontend": {"sample_rate": spec.sample_rate, "fft": spec.fft, "hop": spec.hop,
                     "mel_bins": spec.mel_bins, "fmin": spec.fmin, "fmax": spec.fmax},
        "converted_with": {"keras": keras.__version__}})
    return directory


def pretrained_preset(name, weights="audioset"):
    """The preset folder of a variant's weights: the official checkpoint (found in the
    cache, or downloaded once and converted), or a `.pth` file given by path."""
    spec = variant(name)
    source = _weights_file(name, weights)
    if source is None:
        raise ModelConfigError(f"{name} with --weights=none has no pretrained weights to load")
    if source == "audioset":
        directory = checkpoints.preset_dir(spec.name, spec.sha256)
        if checkpoints.read_preset(directory) is not None:
            return directory
        what = f"PANNs checkpoint {spec.file}"
        return convert(spec, checkpoints.download(spec.url, spec.file, spec.sha256, what),
                       spec.url)
    return convert(spec, source, os.path.basename(source))


def fetch_weights(name, weights):
    """The preset of a variant's weights, made now if it must be (see `pretrained_preset`);
    nothing for `--weights=none`."""
    if _weights_file(name, weights) is not None:
        pretrained_preset(name, weights)


def _load_preset(model, spec, directory, head):
    """`model`'s layers set from a preset: all but "predictions" (the AudioSet head),
    unless `head`."""
    weights = os.path.join(directory, checkpoints.PRESET_WEIGHTS)
    if head:  # the preset's own architecture
        model.load_weights(weights)
        return
    tagger = build(spec, AUDIOSET_CLASSES, model.input_shape[-1])
    tagger.load_weights(weights)
    for layer in model.layers:
        if layer.weights and (head or layer.name != "predictions"):
            layer.set_weights(tagger.get_layer(layer.name).get_weights())


def build_model(name, num_classes, sample_rate, num_samples, *, weights="audioset",
                dropout=0.5, mean=None, variance=None, dtype_policy="float32"):
    """A variant fine-tuned to `num_classes` (see `model.build_model`): the AudioSet
    weights for everything but "predictions", which is new (PANNs' `Transfer_Cnn14`)."""
    del mean, variance  # bn0 holds the checkpoint's statistics
    spec = variant(name)
    check_clip(spec, sample_rate, num_samples)
    model = build(spec, num_classes, num_samples, dropout=dropout, dtype_policy=dtype_policy)
    if _weights_file(name, weights) is not None:
        _load_preset(model, spec, pretrained_preset(name, weights), head=False)
    return model


def tagger(name, weights="audioset", num_samples=None):
    """The AudioSet tagger of a variant, with its 527-class head: `(model, class names)`.

    Its input is `num_samples` at the variant's rate (default: an AudioSet clip,
    10 s); its outputs are logits, whose sigmoid is each class's probability.
    """
    spec = variant(name)
    num_samples = num_samples or int(AUDIOSET_CLIP_SECONDS * spec.sample_rate)
    check_clip(spec, spec.sample_rate, num_samples)
    directory = pretrained_preset(name, weights)
    model = build(spec, AUDIOSET_CLASSES, num_samples)
    _load_preset(model, spec, directory, head=True)
    return model, checkpoints.read_preset(directory)["class_names"]


def audioset_class_names():
    """AudioSet's 527 class names in the order of the checkpoints' outputs (the package's
    copy of AudioSet's `class_labels_indices.csv`, CC BY 4.0)."""
    with open(os.path.join(os.path.dirname(__file__), "audioset", "class_labels_indices.csv"),
              newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [row["display_name"] for row in sorted(rows, key=lambda r: int(r["index"]))]


def augment_settings(name, sample_rate):
    """What `augment.Augment` needs of the image: PANNs' bands, floor and SpecAugment."""
    spec = variant(name)
    return dict(sample_rate=sample_rate, band_hz=[float(f) for f in band_centres_hz(spec)],
                floor_db=FLOOR_DB, fill="mean", **SPEC_AUGMENT)


def channel_names(name):
    """What each image channel is, for figures."""
    spec = variant(name)
    return [f"log-mel, {spec.fft}-sample window"]


class PortableLogMel(keras.layers.Layer):
    """`[batch, num_samples]` -> the frontend's `[batch, 64, frames, 1]` image, for LiteRT
    and ONNX (`to_tflite`, `to_onnx` of `portable_frontend`).

    The same values as the frontend (to float32 rounding), with every constant matrix
    the left operand of its product, which the converters' dynamic-range quantization
    leaves in float (it quantizes a product's right-hand weights: the Keras frontend's
    mel `Dense` kernel would become int8). With `dft`, the STFT is a matrix product with
    the Hann-windowed DFT of `fft` points (tf2onnx converts no `RFFT`); without, it is
    `keras.ops.stft`, whose power-of-two FFT LiteRT runs as its builtin RFFT2D.
    `KEEP_FLOAT`: `to_tflite` keeps the layer's ops in float when quantizing.
    """

    KEEP_FLOAT = True

    def __init__(self, backbone, num_samples, mel, dft=False, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.backbone, self.num_samples, self.dft = backbone, num_samples, dft
        self.spec = variant(backbone)
        self.frames = stft_frames(num_samples, self.spec.hop)
        self.mel_t = np.ascontiguousarray(np.asarray(mel, "float32").T)  # [bands, bins]
        self.dft_t = np.concatenate(windowed_dft(self.spec.fft)).astype(
            "float32")  # [2 bins, fft]: Re, then Im

    def _frames(self, waveforms):
        """`[batch, fft, frames]`: the centred frames, from slices and reshapes only."""
        fft, hop, frames = self.spec.fft, self.spec.hop, self.frames
        padded = keras.ops.pad(waveforms, [[0, 0], [fft // 2, fft // 2]], mode="reflect")
        shifts = -(-fft // hop)
        needed = (frames + shifts - 1) * hop
        padded = keras.ops.pad(padded, [[0, 0], [0, max(0, needed - padded.shape[-1])]])
        chunks = keras.ops.reshape(padded[:, :needed], (-1, frames + shifts - 1, hop))
        framed = keras.ops.concatenate(
            [chunks[:, shift:shift + frames, :] for shift in range(shifts)], axis=-1)
        return keras.ops.transpose(framed[:, :, :fft], (0, 2, 1))

    def call(self, waveforms):
        waveforms = keras.ops.cast(waveforms, "float32")
        bins = self.spec.fft // 2 + 1
        if self.dft:
            spectrum = keras.ops.matmul(keras.ops.convert_to_tensor(self.dft_t),
                                        self._frames(waveforms))  # [batch, 2 bins, frames]
            real, imag = spectrum[:, :bins], spectrum[:, bins:]
        else:
            real, imag = keras.ops.stft(waveforms, self.spec.fft, self.spec.hop,
                                        self.spec.fft, window="hann", center=True)
            real, imag = (keras.ops.transpose(x, (0, 2, 1)) for x in (real, imag))
        power = keras.ops.square(real) + keras.ops.square(imag)  # [batch, bins, frames]
        mel = keras.ops.matmul(keras.ops.convert_to_tensor(self.mel_t), power)
        decibels = 10.0 * keras.ops.log10(keras.ops.maximum(mel, MIN_POWER))
        return keras.ops.expand_dims(decibels, -1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.spec.mel_bins, self.frames, 1)


def portable_model(model, backbone, name=None, dft=False):
    """The model with `PortableLogMel` as its frontend (its mel filterbank, its other
    layers shared): for LiteRT, whose RFFT2D takes CNN14's power-of-two FFT, and with
    `dft` for ONNX."""
    mel = model.get_layer("mel_filterbank").get_weights()[0]
    layer = PortableLogMel(backbone, model.input_shape[-1], mel, dft=dft,
                           name="portable_logmel")
    from keras_audio_cnn import portable_frontend

    return portable_frontend.with_frontend(model, layer, name)

