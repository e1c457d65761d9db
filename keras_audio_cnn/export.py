"""Serving forms of trained waveform-to-logits models: one model's, and a run's ensemble.

`export_serving` writes the SavedModel of one model (each model's `saved_model/`);
`export_ensemble` writes ONE SavedModel averaging every finished model of one or
more runs (`export.py`). The ensemble's signatures (a `waveform` is float32 at the
models' sample rate, samples in [-1, 1]; every input is first rounded to 16-bit
PCM values, as training's clips were, and NaN or infinite samples are refused):

    serve(waveform [batch, num_samples])  -> probabilities [batch, classes],
                                             class_names [classes]
    serve_recording(waveform [samples])   -> probabilities [classes], class_names,
          window_probabilities [windows, classes], window_start_seconds [windows]
          (any length: the windows of predict.py, every hop_samples, the last
          zero-padded; probabilities is their mean)
    serve_wav(wav string [])              -> as serve_recording, from the bytes of a
          16-bit PCM WAV file (WAVE_FORMAT_PCM, any channel count, averaged) at the
          models' sample rate; other encodings, WAVE_FORMAT_EXTENSIBLE headers and
          other rates are refused (tf.audio.decode_wav reads only those)
    metadata()                            -> class_names [classes], sample_rate [],
                                             num_samples [], hop_samples [],
                                             activation [] ("softmax" for a run's
                                             classes, "sigmoid" for AudioSet tags)

Formats: `FORMATS` lists what `export.py --format` writes; `tflite` (LiteRT) and
`onnx` are one-clip models with an FFT-free frontend, written by `device_export`.

`export.py --pretrained=panns_cnn14` writes the same forms of a network pretrained on
AudioSet (`ensemble.pretrained`): its probabilities are each AudioSet class's sigmoid.
"""

import os

import keras
import tensorflow as tf

from keras_audio_cnn import audio_stream, ensemble as ensemble_lib, model as model_lib, rundir
from keras_audio_cnn.errors import PredictionError

RECORDING_BATCH = 32  # windows per model call inside serve_recording and serve_wav


def export_serving(model, path, num_samples, class_names):
    """Writes a SavedModel serving waveforms `[None, num_samples]` -> probabilities.

    Its `class_names()` endpoint returns the label names in output order.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",
        fn=lambda waveform: keras.ops.softmax(model(waveform, training=False)),
        input_signature=[tf.TensorSpec([None, num_samples], tf.float32, name="waveform")],
    )
    names = tf.constant(class_names)
    archive.add_endpoint(name="class_names", fn=lambda: names, input_signature=[])
    archive.write_out(path, verbose=False)


def inference_function(model, jit_compile=False):
    """A compiled function from waveforms `[batch, num_samples]` to class probabilities.

    BatchNorm layers run TensorFlow's fused inference kernel, and on a CPU the frontend
    computes one clip at a time (`model.use_fast_kernels`).
    """
    model_lib.use_fast_kernels(model)
    return tf.function(lambda waveform: keras.ops.softmax(model(waveform, training=False)),
                       jit_compile=jit_compile, reduce_retracing=True)


class _EnsembleGraph:
    """The ensemble's computations as TensorFlow functions of waveforms."""

    def __init__(self, ensemble, hop, batch):
        self.models, self.n, self.hop, self.batch = ensemble.models, ensemble.num_samples, hop, batch
        self.rate = ensemble.sample_rate
        self.class_names = tf.constant(ensemble.class_names)
        self.num_classes = len(ensemble.class_names)
        self.activation = ensemble.activation
        self.probabilities = {"softmax": tf.nn.softmax, "sigmoid": tf.math.sigmoid}[
            ensemble.activation]

    def clips(self, waveform):
        """`[batch, num_samples]` -> the mean of the models' softmax (a tagger's sigmoid),
        `[batch, classes]`."""
        waveform = _pcm16(waveform)
        return tf.reduce_mean(
            tf.stack([self.probabilities(m(waveform, training=False)) for m in self.models]),
            axis=0)

    def serve(self, waveform):
        return {"probabilities": self.clips(waveform), "class_names": self.class_names}

    def recording(self, waveform):
        """One waveform of any length, windowed as predict.py windows it."""
        n, hop = self.n, self.hop
        length = tf.shape(waveform)[0]
        check = tf.debugging.assert_positive(length, message="the waveform holds no samples")
        with tf.control_dependencies([check]):
            count = 1 + tf.maximum(0, (length - n + hop - 1) // hop)  # audio_stream.window_starts
        padded = tf.pad(waveform, [[0, (count - 1) * hop + n - length]])
        starts = tf.range(count) * hop
        steps = (count + self.batch - 1) // self.batch

        def step(i, parts):
            window_starts = starts[i * self.batch:(i + 1) * self.batch]
            windows = tf.gather(padded, window_starts[:, None] + tf.range(n)[None, :])
            return i + 1, parts.write(i, self.clips(windows))

        parts = tf.TensorArray(tf.float32, size=steps, infer_shape=False,
                               element_shape=[None, self.num_classes])
        _, parts = tf.while_loop(lambda i, _: i < steps, step, [tf.constant(0), parts])
        windows = parts.concat()
        return {"probabilities": tf.reduce_mean(windows, axis=0),
                "class_names": self.class_names, "window_probabilities": windows,
                "window_start_seconds": tf.cast(starts, tf.float32) / self.rate}

    def wav(self, wav):
        audio, rate = tf.audio.decode_wav(wav)
        check = tf.debugging.assert_equal(
            rate, tf.constant(self.rate, tf.int32),
            # (no apostrophes: TensorFlow's error message would escape them)
            message=f"the WAV file must be at {self.rate} Hz, the sample rate of the models; "
                    "resample it first, or classify it with predict.py, which resamples")
        with tf.control_dependencies([check]):
            return self.recording(tf.reduce_mean(audio, axis=1))

    def metadata(self):
        return {"class_names": self.class_names, "sample_rate": tf.constant(self.rate),
                "num_samples": tf.constant(self.n), "hop_samples": tf.constant(self.hop),
                "activation": tf.constant(self.activation)}


def _pcm16(waveform):
    waveform = tf.debugging.assert_all_finite(
        waveform, "the waveform holds NaN or infinite samples")
    return tf.clip_by_value(tf.round(waveform * 32768.0), -32768.0, 32767.0) / 32768.0


def export_ensemble(ensemble, path, hop, batch=RECORDING_BATCH):
    """Writes ONE SavedModel averaging `ensemble`'s models, with the signatures above."""
    graph = _EnsembleGraph(ensemble, hop, batch)
    archive = keras.export.ExportArchive()
    for model in ensemble.models:
        archive.track(model)
    waveform = "waveform"
    archive.add_endpoint("serve", graph.serve, input_signature=[
        tf.TensorSpec([None, ensemble.num_samples], tf.float32, name=waveform)])
    archive.add_endpoint("serve_recording", graph.recording, input_signature=[
        tf.TensorSpec([None], tf.float32, name=waveform)])
    archive.add_endpoint("serve_wav", graph.wav,
                         input_signature=[tf.TensorSpec([], tf.string, name="wav")])
    archive.add_endpoint("metadata", graph.metadata, input_signature=[])
    archive.write_out(path, verbose=False)


FORMATS = ("saved_model", "tflite", "onnx")


def export_runs(model_dirs, output, output_format="saved_model", hop_seconds=None,
                quantize="none", evaluate=True, log=print, pretrained=None, weights="audioset"):
    """Writes the ensemble of every finished model of `model_dirs` (or the `pretrained`
    AudioSet network, with its `weights`) to `output`, whole or not at all (a temporary
    path renamed into place); returns the `Ensemble`.

    `saved_model` is the SavedModel above; `tflite` and `onnx` are one-clip models
    for devices (`device_export`), `tflite` optionally quantized.
    """

    def load():
        if pretrained:
            return ensemble_lib.pretrained(pretrained, weights, log=log)
        return ensemble_lib.load_ensemble(model_dirs, log=log)

    if output_format != "saved_model":
        from keras_audio_cnn import device_export

        if quantize != "none" and output_format != "tflite":
            raise PredictionError("--quantize applies to --format=tflite only")
        if pretrained and quantize == "int8":
            raise PredictionError(f"--quantize=int8 calibrates on a run's training clips, and "
                                  f"--pretrained={pretrained} has none; use --quantize=dynamic")
        device_export.check_output(output)
        ensemble = load()
        described = device_export.write(ensemble, output, output_format, quantize=quantize,
                                        evaluate=evaluate, log=log)
        log(f"{output}: {output_format} averaging {len(ensemble.members)} model(s): "
            f"{len(ensemble.class_names)} classes, {ensemble.sample_rate} Hz, clips of "
            f"{ensemble.num_samples} samples, {described['bytes'] / 2**20:.2f} MB; "
            f"described in {output}.json")
        return ensemble
    if quantize != "none":
        raise PredictionError("--quantize applies to --format=tflite only")
    _check_output(output)
    ensemble = load()
    hop = audio_stream.hop_samples(hop_seconds, ensemble.sample_rate, ensemble.num_samples)
    directory, name = os.path.split(os.path.abspath(output))
    tf.io.gfile.makedirs(directory)
    rundir.publish(directory, name, lambda path: export_ensemble(ensemble, path, hop))
    log(f"{output}: {output_format} averaging {len(ensemble.members)} model(s): "
        f"{len(ensemble.class_names)} classes, {ensemble.sample_rate} Hz, clips of "
        f"{ensemble.num_samples} samples, windows every {hop} samples")
    return ensemble


def _check_output(output):
    """Refuses to replace a file, or a folder that is not an earlier export."""
    if tf.io.gfile.exists(output) and not tf.io.gfile.isdir(output):
        raise PredictionError(f"--output={output} is a file; give a new path or an earlier "
                              "export's folder (it is replaced)")
    if tf.io.gfile.isdir(output) and tf.io.gfile.listdir(output) and not tf.io.gfile.exists(
            os.path.join(output, "saved_model.pb")):
        raise PredictionError(f"--output={output} is a folder that holds no SavedModel; give "
                              "a new path or an earlier export's folder (it is replaced)")
