"""The frontend's log-mel image from ops that LiteRT (TFLite) and ONNX run.

`frontend.log_mel_image` computes its STFT with `keras.ops.stft`, an `RFFT` of
`fft_length` (100 ms) points whose `Real`/`Imag` parts the magnitude reads. A
model holding it converts to TFLite but fails at inference (LiteRT's `RFFT2D`
kernel takes power-of-two lengths only: 4410 points at 44.1 kHz, 800 at 8 kHz
are not), and tf2onnx refuses `Real`/`Imag` consumers of an `RFFT`.

Here the same image is computed with the DFT written as matrix products, split
Cooley-Tukey style into two small dense DFTs (`fft_length = n1 * n2`, at
44.1 kHz 4410 = 126 x 35, one split for all three channels so that they share
its larger constants), which is exact up to float32 rounding and
needs only MirrorPad, Pad, StridedSlice, Reshape, Transpose, Concatenation,
Mul, Square, Add, BatchMatMul/FullyConnected, Maximum, Log and Div: TFLite builtins that
tf2onnx converts too. A prime FFT length gets one dense DFT matrix (n2 = 1).

For each channel (window `w`, hop `s`, FFT length `N`, `T` frames):

1. reflect-pad `N // 2` samples at each end and take the frames
   `keras.ops.stft(center=True)` takes, as `q = ceil(F / s)` shifted copies of
   the signal cut into hops (only the `F` samples of the frame holding the
   window: the rest of the `N` is the window's zero padding);
2. multiply by the periodic Hann window, as `keras.ops.stft` does;
3. frame sample `n = n2 * a + b` (`a < n1`, `b < n2`): one matrix product
   gives the `n1`-point DFTs over `a` (only the rows `a` the window overlaps)
   for the `n1 // 2 + 1` non-negative frequencies `j` only: the input is real,
   so the others are their complex conjugates;
4. for each `j`, one product with an `[2 n2, 4 k2]` matrix gives the bins
   `k = j + n1 * k2` and `k = (n1 - j) + n1 * k2` (twiddle factors and the
   conjugate symmetry folded in), for every `k2` with `k <= N // 2`;
5. power `re^2 + im^2`, the mel filterbank of `keras.layers.MelSpectrogram`
   with its rows put in the order of step 4, `10 * log10(max(power, 1e-6))`;
6. the same antialiased resizing matrix along time as the Keras frontend.

`MelSpectrogram`'s `top_db` clipping never acts in the frontend (see
`frontend.TOP_DB`), so it is left out.

The layer here is for conversion (TFLite, ONNX): trained models keep the Keras
frontend, and `portable_model` swaps it for this one with the same weights.
"""

import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_audio_cnn import frontend
from keras_audio_cnn.errors import PredictionError


def _ceil_div(a, b):
    return -(-a // b)


class _DftPlan:
    """How one channel's DFT is split: `fft_length = n1 * n2`, window rows kept.

    The frame is `n1` rows of `n2` samples; only `rows` rows starting at `row0`
    overlap the window. `j` counts the non-negative frequencies of the
    `n1`-point DFT, `k2` the multiples of `n1` per bin.
    """

    def __init__(self, fft_length, window_length, n1):
        self.fft_length, self.n1 = fft_length, n1
        self.n2 = fft_length // n1
        left = (fft_length - window_length) // 2  # where keras.ops.stft puts the window
        self.row0 = left // self.n2
        self.rows = _ceil_div(left + window_length, self.n2) - self.row0
        self.j = n1 // 2 + 1
        self.k2 = _ceil_div(fft_length // 2 + 1, n1)

    @property
    def dense(self):
        return self.n2 == 1

    @property
    def bins(self):
        """Power values per frame in the layout of step 4 (`j` then `2 * k2`)."""
        return self.j if self.dense else self.j * 2 * self.k2

    def multiply_adds(self, mel_bins=frontend.NUM_MEL_BINS):
        """Multiply-adds per frame of the DFT and the mel filterbank."""
        first = self.rows * self.n2 * 2 * self.j
        second = 0 if self.dense else self.j * 2 * self.n2 * 4 * self.k2
        return first + second + self.bins * mel_bins

    @classmethod
    def shared(cls, fft_length, windows_and_frames, dense=False):
        """One split for every channel: the fewest multiply-adds over all their frames.

        The channels share one FFT length, so with one `n1` they share the
        second matrices and the mel matrix (the larger constants) too.
        `n1 = fft_length` is a dense DFT: the only split of a prime length.
        """
        candidates = [fft_length] if dense else [
            n1 for n1 in range(2, fft_length + 1) if fft_length % n1 == 0
        ]

        def work(n1):
            return sum(
                frames * cls(fft_length, window, n1).multiply_adds()
                for window, frames in windows_and_frames
            )

        n1 = min(candidates, key=work)
        return [cls(fft_length, window, n1) for window, _ in windows_and_frames]

    def first_matrix(self):
        """`[rows, 2 j]`: cos and -sin of the `n1`-point DFT over the kept rows."""
        a = np.arange(self.row0, self.row0 + self.rows)[:, None]
        angle = 2 * np.pi * (a * np.arange(self.j)[None, :] % self.n1) / self.n1
        return np.concatenate([np.cos(angle), -np.sin(angle)], axis=1)

    def second_matrices(self):
        """`[j, 2 n2, 4 k2]`: from `(Re, Im)` of `A[j, b]` to the bins of `j` and `n1 - j`.

        Columns: Re of bins `j + n1 k2`, Re of bins `n1 - j + n1 k2`, then their Im.
        `A[n1 - j] = conj(A[j])` for real input; `n1 - j` is empty for `j = 0`
        and `j = n1 / 2` (the same bins as `j`).
        """
        n = self.fft_length
        b = np.arange(self.n2)[:, None]
        k2 = np.arange(self.k2)[None, :]
        matrices = np.zeros((self.j, 2 * self.n2, 4 * self.k2))
        for j in range(self.j):
            for group, (k1, sign) in enumerate(((j, 1.0), (self.n1 - j, -1.0))):
                if group == 1 and not 0 < j < self.n1 - j:
                    continue
                # X[k] = sum_b A[k1, b] exp(-2 pi i b k / N), k = k1 + n1 k2;
                # A[k1] = Re + sign * i Im of the computed A[j].
                angle = 2 * np.pi * (b * (k1 + self.n1 * k2) % n) / n
                cos, sin = np.cos(angle), -np.sin(angle)
                re = slice(group * self.k2, (group + 1) * self.k2)
                im = slice((2 + group) * self.k2, (3 + group) * self.k2)
                matrices[j, : self.n2, re] = cos
                matrices[j, self.n2 :, re] = -sign * sin
                matrices[j, : self.n2, im] = sin
                matrices[j, self.n2 :, im] = sign * cos
        return matrices

    def bin_of_each_power(self):
        """The DFT bin of each power value of a frame (-1: none or beyond N / 2)."""
        if self.dense:
            return np.arange(self.j)
        bins = np.full((self.j, 2, self.k2), -1)
        for j in range(self.j):
            for group, k1 in enumerate((j, self.n1 - j)):
                if group == 1 and not 0 < j < self.n1 - j:
                    continue
                bins[j, group] = k1 + self.n1 * np.arange(self.k2)
        bins[bins > self.fft_length // 2] = -1
        return bins.reshape(-1)


def _mel_matrix(sample_rate, plan):
    """`MelSpectrogram`'s filterbank `[N // 2 + 1, bands]`, rows in the plan's layout."""
    layer = frontend.mel_spectrogram_layer(sample_rate, plan.fft_length, plan.fft_length)
    natural = keras.ops.convert_to_numpy(
        layer.linear_to_mel_weight_matrix(
            num_mel_bins=layer.num_mel_bins,
            num_spectrogram_bins=plan.fft_length // 2 + 1,
            sampling_rate=layer.sampling_rate,
            lower_edge_hertz=layer.min_freq,
            upper_edge_hertz=layer.max_freq,
        )
    )
    bins = plan.bin_of_each_power()
    return np.where((bins >= 0)[:, None], natural[np.maximum(bins, 0)], 0.0)


class PortableLogMelImage(keras.layers.Layer):
    """`[batch, num_samples]` waveforms -> the frontend's `[batch, 128, frames, 3]` image.

    `KEEP_FLOAT`: `to_tflite` keeps the layer's ops in float when quantizing.

    The same values as `frontend.log_mel_image` (to float32 rounding), from ops
    that TFLite runs as builtins and tf2onnx converts (see the module docstring).
    `dense=True` uses one dense DFT matrix per channel instead of the split one
    (many times the work and the size; for comparison).
    """

    KEEP_FLOAT = True

    def __init__(self, sample_rate, num_samples, dense=False, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.sample_rate, self.num_samples, self.dense = sample_rate, num_samples, dense
        bands, self.frames, _ = frontend.image_shape(sample_rate, num_samples)
        self.fft_length = frontend.fft_length(sample_rate)
        settings = [
            (window, hop, frontend.spectrogram_frames(num_samples, self.fft_length, hop))
            for _, window, hop in frontend.channel_settings(sample_rate)
        ]
        plans = _DftPlan.shared(
            self.fft_length, [(window, time) for window, _, time in settings], dense
        )
        # Shared by the channels (one constant each in the converted graph). Every
        # constant is stored transposed and multiplies from the left (see `call`).
        self.second_t = None if plans[0].dense else (
            plans[0].second_matrices().transpose(0, 2, 1).astype("float32"))
        self.mel_t = _mel_matrix(sample_rate, plans[0]).T.astype("float32")
        self.channels = []
        for plan, (window, hop, time) in zip(plans, settings):
            segment = plan.rows * plan.n2
            # The periodic Hann window keras.ops.stft uses, zero-padded to the frame.
            window_in_frame = np.zeros(self.fft_length, "float32")
            left = (self.fft_length - window) // 2
            window_in_frame[left : left + window] = tf.signal.hann_window(window, periodic=True)
            start = plan.row0 * plan.n2
            self.channels.append(
                dict(
                    plan=plan,
                    hop=hop,
                    time=time,
                    start=start,
                    segment=segment,
                    shifts=_ceil_div(segment, hop),
                    window=window_in_frame[start : start + segment],
                    first_t=plan.first_matrix().T.astype("float32"),
                    resize_t=np.ascontiguousarray(frontend.resize_matrix(time, self.frames).T),
                )
            )
        self.bands = bands

    def _frames(self, padded, channel):
        """`[batch * time, segment]`: the part of each frame holding the window."""
        hop, time, shifts = channel["hop"], channel["time"], channel["shifts"]
        length = (time + shifts - 1) * hop
        available = padded.shape[-1] - channel["start"]
        signal = padded[:, channel["start"] : channel["start"] + min(length, available)]
        if available < length:
            signal = keras.ops.pad(signal, [[0, 0], [0, length - available]])
        chunks = keras.ops.reshape(signal, (-1, time + shifts - 1, hop))
        frames = keras.ops.concatenate(
            [chunks[:, shift : shift + time, :] for shift in range(shifts)], axis=-1
        )
        return keras.ops.reshape(frames[:, :, : channel["segment"]], (-1, channel["segment"]))

    def _power(self, frames, channel, second_t):
        """`[batch, bins, time]`: |DFT|^2 of windowed frames, in the plan's layout."""
        plan, time = channel["plan"], channel["time"]
        frames = frames * channel["window"]
        if plan.dense:  # n2 = 1: one DFT of each frame, [batch, 2 j, time]: (Re, Im)
            frames = keras.ops.transpose(keras.ops.reshape(frames, (-1, time, plan.rows)),
                                         (0, 2, 1))
            spectrum = keras.ops.square(keras.ops.matmul(channel["first_t"], frames))
            return spectrum[:, : plan.j] + spectrum[:, plan.j :]
        # Step 3: n1-point DFTs over the rows, non-negative frequencies j only, as
        # one product: [rows, batch * time * n2] -> [2 j, batch * time * n2].
        frames = keras.ops.transpose(keras.ops.reshape(frames, (-1, plan.rows, plan.n2)),
                                     (1, 0, 2))
        first = keras.ops.matmul(channel["first_t"],
                                 keras.ops.reshape(frames, (1, plan.rows, -1)))
        # [2, j, batch * time, n2] -> [j, 2 n2, batch * time]
        first = keras.ops.reshape(first, (2, plan.j, -1, plan.n2))
        first = keras.ops.reshape(
            keras.ops.transpose(first, (1, 0, 3, 2)), (plan.j, 2 * plan.n2, -1)
        )
        # Step 4: [j, 4 k2, batch * time]: Re of 2 k2 bins, then their Im.
        spectrum = keras.ops.square(keras.ops.matmul(second_t, first))
        power = spectrum[:, : 2 * plan.k2] + spectrum[:, 2 * plan.k2 :]
        power = keras.ops.reshape(power, (plan.bins, -1, time))
        return keras.ops.transpose(power, (1, 0, 2))

    def call(self, waveforms):
        # Each constant matrix is the left operand of a batched product: converters
        # store the right operand of a matrix product (a fully connected layer's
        # weights) as int8 when quantizing, which would wreck an 80 dB image.
        waveforms = keras.ops.cast(waveforms, "float32")
        half_fft = self.fft_length // 2
        padded = keras.ops.pad(waveforms, [[0, 0], [half_fft, half_fft]], mode="reflect")
        # One tensor per shared constant, so the converted graph holds it once.
        second_t = None if self.second_t is None else keras.ops.convert_to_tensor(self.second_t)
        mel_t = keras.ops.convert_to_tensor(self.mel_t)
        images = []
        for channel in self.channels:
            power = self._power(self._frames(padded, channel), channel, second_t)
            mel = keras.ops.matmul(mel_t, power)  # [batch, bands, time]
            decibels = 10.0 * keras.ops.log10(keras.ops.maximum(mel, frontend.MIN_POWER))
            # [frames, time] @ [batch, time, bands], as the frontend's Dense resizes.
            images.append(keras.ops.matmul(channel["resize_t"],
                                           keras.ops.transpose(decibels, (0, 2, 1))))
        # [batch, frames, bands, 3] -> [batch, bands, frames, 3]
        return keras.ops.transpose(keras.ops.stack(images, axis=-1), (0, 2, 1, 3))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.bands, self.frames, len(self.channels))

    def get_config(self):
        config = super().get_config()
        config.update(
            sample_rate=self.sample_rate, num_samples=self.num_samples, dense=self.dense
        )
        return config


def clip_settings(model):
    """`(sample_rate, num_samples)` of a waveform model from `model.build_model`."""
    name = frontend.channel_settings(1000)[0][0]  # names do not depend on the rate
    return model.get_layer(name).sampling_rate, model.input_shape[-1]


def portable_model(model, sample_rate=None, num_samples=None, name=None):
    """The same classifier with `PortableLogMelImage` as its frontend, for conversion.

    Args:
        model: a waveform -> logits model from `model.build_model`, or loaded from
            its `.keras` file: a frontend ending in the layer "logmel_image", then
            the rest of the model.
        sample_rate, num_samples: the model's clip settings; read from the model
            (its MelSpectrogram layers and input) when omitted.
        name: the new model's name (default `<model name>_portable`).

    Returns:
        A `keras.Model` from waveforms `[batch, num_samples]` to the model's
        outputs whose layers after "logmel_image" are the given model's own
        (the same weights, shared).
    """
    found_rate, found_samples = clip_settings(model)
    sample_rate = found_rate if sample_rate is None else sample_rate
    num_samples = found_samples if num_samples is None else num_samples
    if (sample_rate, num_samples) != (found_rate, found_samples):
        raise ValueError(
            f"model {model.name!r} takes {found_samples} samples at {found_rate} Hz, "
            f"not {num_samples} at {sample_rate} Hz"
        )
    layer = PortableLogMelImage(sample_rate, num_samples, name="portable_logmel_image")
    return with_frontend(model, layer, name)


def with_frontend(model, layer, name=None):
    """`model` with `layer` computing its image (the output of "logmel_image") from the
    waveform, and every layer after the image the model's own (the same weights)."""
    rest = keras.Model(
        model.get_layer(frontend.IMAGE_LAYER).output, model.outputs, name=f"{model.name}_rest"
    )
    waveform = keras.Input(shape=model.input_shape[1:], name="waveform")
    return keras.Model(waveform, rest(layer(waveform)), name=name or f"{model.name}_portable")


def _inference_function(model, batch_size):
    """The model's inference call traced for `[batch_size, num_samples]` waveforms."""
    signature = tf.TensorSpec([batch_size, model.input_shape[-1]], tf.float32, name="waveform")
    function = tf.function(lambda waveform: model(waveform, training=False), autograph=False)
    return function.get_concrete_function(signature)


_QUANTIZED = (np.dtype("int8"), np.dtype("uint8"), np.dtype("int16"))


def _frontend_layers(model):
    """`model`'s frontend layers that must stay float (`KEEP_FLOAT`: `PortableLogMelImage`,
    PANNs' `PortableLogMel`), nested models too."""
    found = []
    for layer in model.layers:
        if getattr(layer, "KEEP_FLOAT", False):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(_frontend_layers(layer))
    return found


def _frontend_tensors(content, layers):
    """The tensors of a `.tflite` flatbuffer that `layers` compute, as
    `(name, dtype, is the layer's output image)`.

    A tensor's name is its ops' scope path (fused ops join theirs with ";");
    Keras numbers a layer's scope (`portable_logmel_image_1`)."""
    scopes = [layer.name for layer in layers]
    images = {tuple(layer.compute_output_shape((None, layer.num_samples))[1:])
              for layer in layers}  # every KEEP_FLOAT layer has `num_samples`
    with warnings.catch_warnings():  # tf.lite.Interpreter is deprecated; it reads names
        warnings.simplefilter("ignore", UserWarning)
        details = tf.lite.Interpreter(model_content=content).get_tensor_details()
    found = []
    for detail in details:
        parts = {part for name in detail["name"].split(";") for part in name.split("/")}
        if any(part == scope or part.startswith(f"{scope}_") for scope in scopes
               for part in parts):
            found.append((detail["name"], np.dtype(detail["dtype"]),
                          tuple(detail["shape"][1:]) in images))
    return found


def to_tflite(model, batch_size=1, quantize="none", representative=None):
    """Converts a (portable) waveform model to a `.tflite` flatbuffer, builtin ops only.

    `quantize`: "none"; "dynamic" (weights stored as int8, computed in float);
    "int8" (weights and, where the op allows, activations in int8, calibrated on
    `representative()`, a generator of `[waveforms]` batches; float elsewhere).
    Either quantizes the classifier only: the frontend stays float32 (its image
    spans 80 dB, which 8 bits cannot hold; quantized, it gave chance accuracy),
    only its output image is quantized where the first convolution takes int8.
    """
    concrete = _inference_function(model, batch_size)

    def converter(optimize=True):
        # Not `from_concrete_functions([concrete], model)`: with the Keras 3 model as
        # its trackable object, TF 2.21 froze garbage into BatchNorm constants (NaN
        # outputs of MobileNetV3Small, values off by 1e18 for one Conv2D+BatchNorm).
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if optimize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return converter

    if quantize == "none":
        return converter(optimize=False).convert()
    layers = _frontend_layers(model)
    if quantize == "dynamic":
        # The frontend's constants are the left operands of its products, which
        # the dynamic-range quantizer leaves in float (it quantizes weights).
        content = converter().convert()
    else:
        # Selective quantization (TFLite's quantization debugger): the frontend's
        # ops are left out by the names of their outputs in the float model.
        float_content = converter(optimize=False).convert()
        names = [name for name, _, _ in _frontend_tensors(float_content, layers)]
        quantized = converter()
        quantized.representative_dataset = representative
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=quantized, debug_dataset=representative,
            debug_options=tf.lite.experimental.QuantizationDebugOptions(
                denylisted_nodes=names))
        content = debugger.get_nondebug_quantized_model()
    # Only the image may be quantized, as the first convolution's int8 input.
    quantized_frontend = [name for name, dtype, image in _frontend_tensors(content, layers)
                          if dtype in _QUANTIZED and not image]
    if quantized_frontend:
        raise PredictionError(
            f"the {quantize} .tflite quantized {len(quantized_frontend)} frontend tensors "
            f"(first {quantized_frontend[0]!r}), which would wreck its images; nothing was "
            f"written: TensorFlow {tf.__version__}'s converter quantizes otherwise than 2.21's "
            "(tested); export without --quantize")
    return content


def to_onnx(model, opset=17):
    """Converts a (portable) waveform model to an ONNX model proto (needs tf2onnx).

    tf2onnx is given the model's function with its weights as inputs (Keras's
    `stateless_call`), and the weights become the ONNX model's initializers after: with
    the weights frozen into graph constants, as tf2onnx's own recipe does, it held about
    250 bytes of memory per weight (4.7 GB for DenseNet201, 19 GB for CNN14, measured),
    while this way the graph it converts holds no weights (CNN14: 1.3 s, 1.9 GB).
    Constants the function captures (a `Normalization` layer's statistics) become
    initializers too.
    """
    import onnx
    import onnx.numpy_helper
    import tf2onnx  # optional: only for this export

    trainable, fixed = list(model.trainable_variables), list(model.non_trainable_variables)
    weights = trainable + fixed

    def call(waveform, *values):
        outputs, _ = model.stateless_call(list(values[:len(trainable)]),
                                          list(values[len(trainable):]), waveform,
                                          training=False)
        return outputs

    signature = [tf.TensorSpec([None, model.input_shape[-1]], tf.float32, name="waveform")]
    signature += [tf.TensorSpec(w.shape, w.dtype, name=f"weight_{i}")
                  for i, w in enumerate(weights)]
    concrete = tf.function(call, autograph=False).get_concrete_function(*signature)
    if any(t.dtype == tf.resource for t in concrete.captured_inputs):
        raise PredictionError(f"{model.name} reads a variable that is not one of its weights; "
                              "it cannot be converted to ONNX")
    names = [tensor.name for tensor in concrete.inputs]
    values = [keras.ops.convert_to_numpy(w) for w in weights]
    values += [t.numpy() for t in concrete.captured_inputs]
    proto, _ = tf2onnx.convert.from_graph_def(
        concrete.graph.as_graph_def(), input_names=names,
        output_names=[tensor.name for tensor in concrete.outputs], opset=opset)
    value_of = dict(zip(names[1:], values))
    inputs = list(proto.graph.input)
    del proto.graph.input[:]
    for graph_input in inputs:
        if graph_input.name in value_of:
            proto.graph.initializer.append(
                onnx.numpy_helper.from_array(np.asarray(value_of[graph_input.name]),
                                             graph_input.name))
        else:
            proto.graph.input.append(graph_input)
    try:  # tf2onnx keeps the ops it cannot convert, as nodes no ONNX runtime has
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as error:
        raise PredictionError(
            f"the ONNX conversion of {model.name} is not a valid ONNX model "
            f"({' '.join(str(error).split())[:200]}); nothing was written") from None
    return proto
