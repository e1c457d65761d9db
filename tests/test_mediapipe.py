"""MediaPipe as a client of export.py --format=tflite: its AudioClassifier reads the
file's LiteRT metadata and classifies a WAV as predict.py does, window by window."""

import io
import json
import platform
import sys
import zipfile

import numpy as np
import pytest
import soundfile as sf

from tfds_builders.audio_folder import fake_data as folder_fake

CLASSES = ("bird", "cat", "dog")
RATE, CLIP = 8000, 4000  # the tiny folder's clips: 0.5 s at 8 kHz
# MediaPipe runs the .tflite as ai_edge_litert does (the same scores, to the bit here),
# and test_export.py holds ai_edge_litert to predict.py within 1e-3 (the matrix-product
# frontend against the Keras FFT one).
SAME_RATE_ATOL = 1e-3


@pytest.fixture(scope="module")
def mp_audio():
    """MediaPipe's audio tasks; skipped only where PyPI has no mediapipe wheel (Intel
    macOS since 0.10.21): elsewhere the test extra installs it."""
    try:
        from mediapipe.tasks.python import audio
    except ImportError as error:
        if sys.platform == "darwin" and platform.machine() == "x86_64":
            pytest.skip("mediapipe has no wheel for Intel macOS since 0.10.21")
        raise AssertionError(f"mediapipe is missing ({error}): pip install -e \".[test]\"")
    return audio


@pytest.fixture(scope="module")
def exported(make_sounds, folder_flags, tiny_model, run_cli):
    """One tiny model (fold 1) exported as a .tflite."""
    work = make_sounds(classes=CLASSES, files_per_class=6)
    model_dir = work / "model"
    run_cli("train.py", *folder_flags(work), *tiny_model, "--folds=1",
            f"--model_dir={model_dir}")
    path = work / "model.tflite"
    run_cli("export.py", f"--model_dir={model_dir}", "--format=tflite", f"--output={path}")
    return dict(work=work, model_dir=str(model_dir), path=path)


def _read_metadata(content):
    """The TFLITE_METADATA of a .tflite, read with MediaPipe's generated schema code, and
    the files archived after the flatbuffer."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as metadata_fb
    from mediapipe.tasks.metadata import schema_py_generated as model_fb

    model = model_fb.Model.GetRootAs(content, 0)
    entries = [model.Metadata(i) for i in range(model.MetadataLength())]
    found = [m for m in entries if m.Name() == b"TFLITE_METADATA"]
    assert len(found) == 1, [m.Name() for m in entries]
    buffer = model.Buffers(found[0].Buffer()).DataAsNumpy().tobytes()
    assert metadata_fb.ModelMetadata.ModelMetadataBufferHasIdentifier(buffer, 0)
    metadata = metadata_fb.ModelMetadataT.InitFromObj(
        metadata_fb.ModelMetadata.GetRootAs(buffer, 0))
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    return metadata, files


def test_metadata_holds_the_labels_and_audio_properties(exported, mp_audio, read_json):
    from mediapipe.tasks.metadata import metadata_schema_py_generated as metadata_fb

    from keras_audio_cnn import litert_metadata
    from keras_audio_cnn.errors import PredictionError

    content = exported["path"].read_bytes()
    metadata, files = _read_metadata(content)
    assert metadata.minParserVersion == b"1.3.0"  # the schema version of AudioProperties
    (subgraph,) = metadata.subgraphMetadata
    (waveform,), (scores,) = subgraph.inputTensorMetadata, subgraph.outputTensorMetadata
    assert waveform.content.contentPropertiesType == metadata_fb.ContentProperties.AudioProperties
    audio = waveform.content.contentProperties
    assert (audio.sampleRate, audio.channels) == (RATE, 1)
    (labels,) = scores.associatedFiles
    assert labels.type == metadata_fb.AssociatedFileType.TENSOR_AXIS_LABELS
    assert files == {"labels.txt": b"bird\ncat\ndog\n"} and labels.name == b"labels.txt"
    assert b"softmax" in scores.description
    described = read_json(f"{exported['path']}.json")  # the description beside it stays
    assert described["class_names"] == list(CLASSES) and described["bytes"] == len(content)

    # Written again (new names): one metadata entry and one label file, the new ones.
    again = litert_metadata.with_metadata(content, ["x", "y", "z"], 16000)
    metadata, files = _read_metadata(again)
    audio = metadata.subgraphMetadata[0].inputTensorMetadata[0].content.contentProperties
    assert audio.sampleRate == 16000 and files == {"labels.txt": b"x\ny\nz\n"}
    with pytest.raises(PredictionError, match="cannot be a line of labels.txt"):
        litert_metadata.with_metadata(content, ["a", "b\nc", "d"], RATE)


def _mediapipe_windows(audio, model_path, wav):
    """MediaPipe's AudioClassifier on a WAV (read with soundfile, every channel):
    [(start ms, {class: score})] for each window it cuts."""
    from mediapipe.tasks.python.components.containers import audio_data
    from mediapipe.tasks.python.core import base_options

    samples, rate = sf.read(wav, dtype="float32", always_2d=True)
    options = audio.AudioClassifierOptions(
        base_options=base_options.BaseOptions(model_asset_path=str(model_path)),
        running_mode=audio.RunningMode.AUDIO_CLIPS)
    with audio.AudioClassifier.create_from_options(options) as classifier:
        results = classifier.classify(audio_data.AudioData.create_from_array(samples, rate))
    return [(r.timestamp_ms, {c.category_name: c.score for c in r.classifications[0].categories})
            for r in results]


def _recording(rate):
    """3.2 s, [samples, 1]: the lowest class's tone then the highest's (7 windows of
    0.5 s, the last padded), at `rate`."""
    rng = np.random.default_rng(4)
    low, high = (folder_fake.class_frequency(k, len(CLASSES)) for k in (0, len(CLASSES) - 1))
    return np.concatenate([folder_fake.tone(rng, f, 1.6, rate, 1) for f in (low, high)])


@pytest.fixture(scope="module")
def wavs(exported, run_cli, tmp_path_factory):
    """16-bit WAVs of `_recording` (mono and stereo at the model's rate, mono at 16 and
    44.1 kHz) and predict.py's windows of each, one clip apart as MediaPipe's (they do
    not overlap): {name: (path, [(start ms, {class: probability})])}."""
    folder = tmp_path_factory.mktemp("wavs")
    # predict.py rounds a stereo file's channel mean to a 16-bit value (as training's
    # clips were), MediaPipe does not: the channels differ by even steps, so that their
    # mean is one already.
    left = np.round(_recording(RATE) * 32767).astype(np.int16)
    right = left[::-1] // 2
    right += (left - right) % 2
    assert not np.any((left.astype(int) - right) % 2)
    files = {"mono": (left, RATE), "stereo": (np.concatenate([left, right], axis=1), RATE)}
    for rate in (16000, 44100):
        files[f"mono_{rate}"] = (_recording(rate), rate)
    paths = {}
    for name, (samples, rate) in files.items():
        paths[name] = str(folder / f"{name}.wav")
        sf.write(paths[name], samples, rate, subtype="PCM_16")
    out = folder / "predict.json"
    run_cli("predict.py", f"--model_dir={exported['model_dir']}", "--format=json",
            "--per_window", f"--hop_seconds={CLIP / RATE}", f"--output={out}",
            *paths.values())
    rows = {row["path"]: row for row in json.loads(out.read_text())}
    return {name: (path, [(round(1000 * w["start"]), w["probabilities"])
                          for w in rows[path]["windows"]]) for name, path in paths.items()}


def _compare(mediapipe, predicted, atol, lead):
    """Window starts equal; each window's scores within `atol` of predict.py's, and the
    same top class wherever predict.py's lead over the second exceeds `lead`; returns
    how many windows' top classes were compared."""
    assert [start for start, _ in mediapipe] == [start for start, _ in predicted]
    compared = 0
    for (start, got), (_, expected) in zip(mediapipe, predicted):
        assert sorted(got) == sorted(CLASSES)
        np.testing.assert_allclose([got[c] for c in CLASSES], [expected[c] for c in CLASSES],
                                   atol=atol, err_msg=f"window at {start} ms")
        first, second = sorted(expected.values(), reverse=True)[:2]
        if first - second > lead:
            assert max(got, key=got.get) == max(expected, key=expected.get), start
            compared += 1
    return compared


@pytest.mark.parametrize("name", ["mono", "stereo"])
def test_audio_classifier_gives_predict_scores_per_window(exported, mp_audio, wavs, name):
    """At the model's rate, MediaPipe's 7 windows are ai_edge_litert's on the same
    samples, and predict.py's within SAME_RATE_ATOL (measured: 5e-6), and so are their
    top classes (ties aside). A stereo file is averaged to mono by both."""
    from keras_audio_cnn import device_export

    path, predicted = wavs[name]
    windows = _mediapipe_windows(mp_audio, exported["path"], path)
    assert len(windows) == 7
    samples = sf.read(path, dtype="float32", always_2d=True)[0].mean(axis=1)
    clips = np.pad(samples, (0, 7 * CLIP - len(samples))).reshape(7, CLIP)
    litert = device_export.run_tflite(
        device_export.interpreter(exported["path"].read_bytes()), clips)
    np.testing.assert_allclose([[scores[c] for c in CLASSES] for _, scores in windows], litert,
                               atol=1e-6)
    assert _compare(windows, predicted, SAME_RATE_ATOL, 2 * SAME_RATE_ATOL) >= 5


@pytest.mark.parametrize("name", ["mono_16000", "mono_44100"])
def test_audio_classifier_resamples_other_rates(exported, mp_audio, wavs, name):
    """At 16 and 44.1 kHz MediaPipe resamples to the metadata's 8 kHz itself: the same
    windows, and the top class where predict.py's is clear, but scores up to 0.22 apart
    (measured): its resampler takes 17% off the 3 kHz tone that predict.py's soxr
    passes whole (the test below), and this tiny model, trained one epoch from random
    weights, is that sensitive."""
    path, predicted = wavs[name]
    windows = _mediapipe_windows(mp_audio, exported["path"], path)
    assert len(windows) == 7
    assert _compare(windows, predicted, 0.25, 0.5) >= 2


def _tone_gain(samples, frequency, rate, amplitude):
    """The amplitude of `frequency` in `samples` (a least-squares sine and cosine over
    their middle, away from the resamplers' edges), over `amplitude`."""
    t = np.arange(len(samples)) / rate
    basis = np.stack([np.sin(2 * np.pi * frequency * t), np.cos(2 * np.pi * frequency * t)], 1)
    middle = slice(len(samples) // 8, -len(samples) // 8)
    (a, b), *_ = np.linalg.lstsq(basis[middle], samples[middle], rcond=None)
    return float(np.hypot(a, b)) / amplitude


def test_resampler_attenuates_near_nyquist_and_adds_a_tail(mp_audio, tmp_path):
    """What MediaPipe feeds a model from a 16 kHz file, seen through a .tflite whose
    scores are its input samples (times 2): a 250 Hz tone whole, as predict.py's soxr
    passes it, but a 3 kHz tone (3/4 of the 8 kHz model's Nyquist frequency) 17% weaker
    (measured 0.831), where soxr keeps it whole; and a few samples more than the file
    holds (measured 5: the resampler's tail), so that 2 s, 4 clips, give a fifth window."""
    import keras
    import soxr
    import tensorflow as tf

    from keras_audio_cnn import litert_metadata
    from tfds_builders.audio_io import RESAMPLE_TYPE

    waveform = keras.Input((CLIP,))
    model = keras.Model(waveform, keras.layers.Rescaling(2.0)(waveform))
    traced = tf.function(lambda w: model(w)).get_concrete_function(
        tf.TensorSpec([1, CLIP], tf.float32))
    content = tf.lite.TFLiteConverter.from_concrete_functions([traced]).convert()
    path = tmp_path / "samples.tflite"
    path.write_bytes(litert_metadata.with_metadata(content, [str(i) for i in range(CLIP)],
                                                   RATE))
    rate, amplitude = 16000, 0.5
    for frequency, low, high in ((250, 0.99, 1.01), (3000, 0.78, 0.88)):
        tone = amplitude * np.sin(2 * np.pi * frequency * np.arange(2 * rate) / rate)
        wav = tmp_path / f"{frequency}.wav"
        sf.write(wav, tone, rate, subtype="FLOAT")
        windows = _mediapipe_windows(mp_audio, path, wav)
        assert [start for start, _ in windows] == [0, 500, 1000, 1500, 2000]
        fed = np.concatenate([[scores[str(i)] / 2 for i in range(CLIP)] for _, scores in windows])
        assert 0 < np.flatnonzero(fed)[-1] + 1 - 2 * RATE < 10  # the tail, then zeros
        assert low < _tone_gain(fed[:2 * RATE], frequency, RATE, amplitude) < high, frequency
        resampled = soxr.resample(tone, rate, RATE, quality=RESAMPLE_TYPE)
        assert len(resampled) == 2 * RATE
        assert _tone_gain(resampled, frequency, RATE, amplitude) == pytest.approx(1, abs=0.01)
