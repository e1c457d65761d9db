"""Classifying recordings with every finished model of one or more runs.

    from keras_audio_cnn import predict

    for result in predict.classify(["field/", "a.wav"], "runs/esc50_DenseNet201"):
        print(result.path, result.error or result.top(3))

    # AudioSet's 527 classes, no training: PANNs CNN14's sigmoid tags
    for result in predict.classify("street.wav", pretrained="panns_cnn14"):
        print(result.path, result.error or result.top(5))

A recording is cut into the models' clip-length windows (`audio_stream`: the
waveform training would have stored, windows every `hop_seconds`, the last one
zero-padded); each window's probabilities are the mean of every model's softmax
(a pretrained tagger's: each class's sigmoid), and a file's are the mean over its
windows. Files stream through in batches of
windows: a thread decodes the next batches (at most two ahead) while the models
classify the current one, and no more than a block of one file, three batches
of windows and the file being finished are held at a time.
"""

import dataclasses
import os
import queue
import sys
import threading

import numpy as np
import soundfile as sf

from keras_audio_cnn import audio_stream, ensemble as ensemble_lib
from keras_audio_cnn.errors import AudioDataError, ConfigError
from tfds_builders.audio_folder.scan import AUDIO_EXTENSIONS
from tfds_builders.audio_io import sndfile_path

DEFAULT_BATCH_SIZE = 32


@dataclasses.dataclass
class Window:
    """One window of a recording: where it lies (seconds) and its class probabilities."""

    start: float
    end: float  # the window's end, or the recording's where the window was padded
    probabilities: np.ndarray  # float64 [classes], in `class_names` order


@dataclasses.dataclass
class FileResult:
    """The classification of one input: a file's probabilities, or why it has none."""

    path: str
    class_names: list
    probabilities: np.ndarray | None = None  # float64 [classes]: the mean over windows
    seconds: float | None = None  # the recording's length
    windows: list | None = None  # [Window], with per_window=True
    error: str | None = None  # one line, for an input that could not be classified

    @property
    def label(self):
        return self.class_names[int(np.argmax(self.probabilities))]

    @property
    def probability(self):
        return float(np.max(self.probabilities))

    def top(self, k):
        """[(class name, probability)] of the `k` most probable classes."""
        return top_classes(self.probabilities, self.class_names, k)


def top_classes(probabilities, class_names, k):
    order = np.argsort(-np.asarray(probabilities), kind="stable")[:k]
    return [(class_names[i], float(probabilities[i])) for i in order]


def classify(paths, model_dirs=None, *, hop_seconds=None, per_window=False,
             batch_size=DEFAULT_BATCH_SIZE, progress=False, log=None, precision="float32",
             pretrained=None, weights="audioset"):
    """Classifies audio files with every finished model of `model_dirs`, averaged, or tags
    them with a pretrained network's AudioSet classes.

    Args:
      paths: files and directories (walked recursively for files ending in
        `AUDIO_EXTENSIONS`, hidden entries skipped), or a single path.
      model_dirs: a run directory written by train.py, a list of them (their models
        are averaged together), or an `ensemble.Ensemble` already loaded.
      pretrained: instead of `model_dirs`, a network of `ensemble.PRETRAINED` (e.g.
        "panns_cnn14"): AudioSet's 527 classes, each with its own sigmoid probability,
        in windows of 10 s (an AudioSet clip).
      weights: with `pretrained`: "audioset" (the official checkpoint, cached after
        its first download) or the path of a `.pth` checkpoint downloaded by hand.
      hop_seconds: seconds between windows of a recording longer than a clip
        (default: half a clip).
      per_window: also give each window's probabilities (`FileResult.windows`).
      batch_size: windows per model call.
      progress: show a progress bar of windows and files (tqdm, on stderr).
      log: where notes go (unfinished models left out); default: stderr.
      precision: "float32" (the saved models' arithmetic) or "mixed" (the backbones in
        bfloat16 on CPUs with bfloat16 instructions, float16 on GPUs; see
        `ensemble.load_ensemble`). With an `Ensemble` given, its own precision is used.

    Returns:
      `Predictions`: an iterator of one `FileResult` per input file, in input order (a
      directory's files sorted), computed as it is consumed; an input that cannot be
      classified (undecodable, empty, NaN samples, missing, a directory without
      audio) has `error` set instead.

    Raises (at once, before any file is read):
      RunDirError, PredictionError: a model directory that cannot be used.
      ConfigError: a hop outside (0, clip]; both or neither of `model_dirs` and
        `pretrained`.
      ModelConfigError: pretrained weights that cannot be had (offline, a wrong file).
    """
    log = log or (lambda line: print(line, file=sys.stderr))
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if (model_dirs is None) == (pretrained is None):
        raise ConfigError("give either the model directories of train.py runs "
                          "(--model_dir) or a pretrained network (--pretrained), not both")
    if isinstance(model_dirs, ensemble_lib.Ensemble):
        ensemble = model_dirs
    elif pretrained:
        ensemble = ensemble_lib.pretrained(pretrained, weights, log=log, precision=precision)
    else:
        ensemble = ensemble_lib.load_ensemble(model_dirs, log=log, precision=precision)
    hop = audio_stream.hop_samples(hop_seconds, ensemble.sample_rate, ensemble.num_samples)
    if int(batch_size) < 1:
        raise ConfigError(f"--batch_size={batch_size} must be at least 1")
    return Predictions(ensemble, _classify(paths, ensemble, hop, per_window, int(batch_size),
                                           progress))


class Predictions:
    """What `classify` returns: an iterator of `FileResult`, with the `ensemble` (its
    `class_names`, `sample_rate`, `num_samples`, `members`) that classifies them."""

    def __init__(self, ensemble, results):
        self.ensemble, self.class_names, self._results = ensemble, ensemble.class_names, results

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._results)


def input_files(paths):
    """(path, error) of every input file: a file as given, a directory's audio files
    (sorted, recursively), or an error for a missing path or a directory without audio."""
    for path in map(os.fspath, paths):
        if os.path.isdir(path):
            found = False
            for file in _walk(path):
                found = True
                yield file, None
            if not found:
                yield path, (f"{path} holds no audio files ({', '.join(AUDIO_EXTENSIONS)}); "
                             "give a folder of recordings")
        elif os.path.exists(path):
            yield path, None
        else:
            yield path, f"{path} does not exist; give an audio file or a folder of them"


def _walk(directory):
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):  # as os.walk: linked folders are not entered
            yield from _walk(entry.path)
        elif os.path.splitext(entry.name)[1].lower() in AUDIO_EXTENSIONS:
            yield entry.path


@dataclasses.dataclass
class _Pending:
    """A file the decoder has started: set complete before any later file's window."""

    path: str
    error: str | None = None
    length: int | None = None


def _windows(paths, ensemble, hop, pending):
    """Yields (window, file index, start) of every file; records each file in `pending`."""
    for index, (path, error) in enumerate(input_files(paths)):
        record = pending[index] = _Pending(path, error)
        if error:
            continue
        recording = audio_stream.Recording(path, ensemble.sample_rate, ensemble.num_samples, hop)
        try:
            for start, window in recording:
                yield window, index, start
        except AudioDataError as error:
            record.error = str(error)
        else:
            record.length = recording.length


def _batches(paths, ensemble, hop, pending, batch_size, ahead=2):
    """Yields `(windows [batch, num_samples], file indices, starts)`, decoded in a thread
    up to `ahead` batches before they are taken.

    A Python thread, not `tf.data.Dataset.from_generator`: with the generator running
    inside TensorFlow's thread pools, about one pass in three over a long recording
    ran the models on one core instead of two (half the speed) on a 2-core CPU.
    """
    ready = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def put(item):
        while not stop.is_set():
            try:
                return ready.put(item, timeout=0.1)
            except queue.Full:
                continue

    def decode():
        try:
            chunk = []
            for item in _windows(paths, ensemble, hop, pending):
                chunk.append(item)
                if len(chunk) == batch_size:
                    put(chunk)
                    chunk = []
                if stop.is_set():
                    return
            put(chunk)
            put(None)
        except BaseException as error:  # raised again in the consumer's thread
            put(error)

    thread = threading.Thread(target=decode, name="predict-decode", daemon=True)
    thread.start()
    try:
        while (chunk := ready.get()) is not None:
            if isinstance(chunk, BaseException):
                raise chunk
            if chunk:
                windows, files, starts = zip(*chunk)
                yield np.stack(windows), files, starts
    finally:
        stop.set()
        thread.join()


def _classify(paths, ensemble, hop, per_window, batch_size, progress):
    pending = {}
    forward = ensemble.logits_function()
    results = _Results(ensemble, pending, per_window)
    bar = _Progress(paths, ensemble, hop) if progress else None
    try:
        for windows, files, starts in _batches(paths, ensemble, hop, pending, batch_size):
            probabilities = ensemble_lib.mean_probabilities(forward(windows),
                                                            ensemble.activation)
            if bar:
                bar.windows(len(probabilities))
            for p, index, start in zip(probabilities, files, starts):
                yield from _shown(results.add(int(index), int(start), p), bar)
        yield from _shown(results.finish(), bar)
    finally:
        if bar:
            bar.close()


class _Progress:
    """A tqdm bar on stderr counting windows (exact for a 3-hour file as for many short
    ones), with the files done; the totals come from the files' headers."""

    def __init__(self, paths, ensemble, hop):
        import tqdm  # a dependency of tensorflow-datasets

        self.files, total = 0, 0
        for path, error in input_files(paths):
            self.files += 1
            total += 0 if error else _window_count(path, ensemble, hop)
        self.done = 0
        self.bar = tqdm.tqdm(total=total, unit="window", file=sys.stderr, dynamic_ncols=True)
        self.bar.set_postfix_str(f"files 0/{self.files}")

    def windows(self, count):
        self.bar.update(count)

    def file_done(self):
        self.done += 1
        self.bar.set_postfix_str(f"files {self.done}/{self.files}")

    def close(self):
        self.bar.close()


def _window_count(path, ensemble, hop):
    try:
        info = sf.info(sndfile_path(path))
    except Exception:  # reported when the file is decoded
        return 0
    length = audio_stream.resampled_length(info.frames, info.samplerate, ensemble.sample_rate)
    return audio_stream.window_count(length, ensemble.num_samples, hop)


def _shown(results, bar):
    for result in results:
        if bar:
            bar.file_done()
        yield result


class _Results:
    """Sums each file's window probabilities; a file is done when a later one starts."""

    def __init__(self, ensemble, pending, per_window):
        self.ensemble, self.pending, self.per_window = ensemble, pending, per_window
        self.next = 0  # the first file not given out yet
        self.total, self.count, self.windows = None, 0, []

    def add(self, index, start, probabilities):
        yield from self._done_before(index)
        self.total = probabilities if self.total is None else self.total + probabilities
        self.count += 1
        if self.per_window:
            self.windows.append((start, probabilities))

    def finish(self):
        """The files not given out yet: every one is complete once the decoder is done."""
        yield from self._done_before(self.next + len(self.pending))

    def _done_before(self, index):
        while self.next < index:
            yield self._result(self.pending.pop(self.next))
            self.next += 1
            self.total, self.count, self.windows = None, 0, []

    def _result(self, record):
        names = self.ensemble.class_names
        if record.error or self.total is None:
            return FileResult(record.path, names, error=record.error)
        rate, n = self.ensemble.sample_rate, self.ensemble.num_samples
        windows = None
        if self.per_window:
            windows = [Window(start / rate, min(start + n, record.length) / rate, p)
                       for start, p in self.windows]
        return FileResult(record.path, names, self.total / self.count, record.length / rate,
                          windows)
