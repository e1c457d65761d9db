"""predict.py and keras_audio_cnn.predict on a trained tiny run: accuracy, windows, outputs, errors."""

import csv
import fcntl
import io
import json
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios

import numpy as np
import pytest
import soundfile as sf

from tfds_builders.audio_folder import fake_data as folder_fake

CLASSES = ("a_low", "b_high")  # 250 Hz and 3 kHz tones (folder_fake.class_frequency)
RATE, CLIP = 8000, 4000  # the tiny folder's clips: 0.5 s at 8 kHz
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def trained(make_sounds, folder_flags, tiny_model, run_cli, tmp_path_factory):
    """A run of 2 models of fold 1 (of 3) on a folder of one-clip files; folds.csv deals
    the files, so the held-out ones are known. Trained long enough to tell the tones apart."""
    work = make_sounds(classes=CLASSES, files_per_class=15)
    audio = work / "audio"
    files = sorted(p.relative_to(audio).as_posix() for p in audio.rglob("*.*")
                   if p.parent != audio and not p.name.startswith("."))
    folds = {f: i % 3 + 1 for i, f in enumerate(files)}
    (audio / "folds.csv").write_text(
        "filename,fold\n" + "".join(f"{f},{k}\n" for f, k in folds.items()))
    model_dir = work / "model"
    run_cli("train.py", *folder_flags(work, num_folds=3), *tiny_model, "--epochs=5",
            "--learning_rate=1e-3", "--folds=1", "--runs=2", f"--model_dir={model_dir}")
    held_out = [str(audio / f) for f, k in folds.items() if k == 1]
    return dict(work=work, model_dir=str(model_dir), held_out=held_out,
                scratch=tmp_path_factory.mktemp("inputs"))


def predict(run_cli, trained, *args, check=True):
    return run_cli("predict.py", f"--model_dir={trained['model_dir']}", *args, check=check)


def error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("predict.py: error: ")]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_predict_over_the_held_out_files_gives_evaluates_ensemble_accuracy(
        trained, run_cli, read_json):
    run_cli("evaluate.py", f"--model_dir={trained['model_dir']}")
    evaluation = read_json(trained["model_dir"], "evaluation.json")
    assert evaluation["tasks"]["fold1"]["models"] == ["fold1/run1", "fold1/run2"]
    out = trained["scratch"] / "held_out.csv"
    predict(run_cli, trained, "--format=csv", f"--output={out}", *trained["held_out"])
    header, *rows = read_csv(out)
    assert header == ["path", "label", "probability", *CLASSES]
    assert [r[0] for r in rows] == trained["held_out"]
    truth = [os.path.basename(os.path.dirname(r[0])) for r in rows]
    accuracy = float(np.mean([r[1] == t for r, t in zip(rows, truth)]))
    assert accuracy == evaluation["accuracy"]["fold1"]
    assert len(rows) == evaluation["tasks"]["fold1"]["num_examples"] == 10
    # The same probabilities, not only the same labels: evaluate.py's mean cross-entropy.
    chosen = np.array([float(r[header.index(t)]) for r, t in zip(rows, truth)])
    loss = float(-np.log(np.maximum(chosen, 1e-300)).mean())
    assert loss == pytest.approx(evaluation["tasks"]["fold1"]["loss"], rel=1e-6)


def _long_recording(path, rate=22050):
    """2 s of the first class's tone, then 2 s of the second's, at another rate."""
    rng = np.random.default_rng(7)
    parts = [folder_fake.tone(rng, folder_fake.class_frequency(k, 2), 2.0, rate, 1)
             for k in range(2)]
    sf.write(path, np.concatenate(parts), rate, subtype="PCM_16")


def test_windows_of_a_long_recording_switch_class_where_the_recording_does(trained):
    from keras_audio_cnn import predict as predict_lib

    path = str(trained["scratch"] / "low_then_high.wav")
    _long_recording(path)
    result, = predict_lib.classify([path], trained["model_dir"], per_window=True, batch_size=5)
    starts = [w.start for w in result.windows]
    assert starts == [0.25 * i for i in range(15)]  # half-clip hops, the last ends at 4 s
    assert [w.end for w in result.windows] == [s + 0.5 for s in starts]
    assert result.seconds == 4.0
    for window in result.windows:
        assert window.probabilities.sum() == pytest.approx(1.0)
        label = CLASSES[int(np.argmax(window.probabilities))]
        if window.end <= 2.0:
            assert label == "a_low", window
        elif window.start >= 2.0:
            assert label == "b_high", window
    np.testing.assert_allclose(result.probabilities,
                               np.mean([w.probabilities for w in result.windows], axis=0))
    (label, probability), _ = result.top(2)
    assert (label, probability) == (result.label, result.probability)


def test_csv_json_and_table_outputs_name_classes(trained, run_cli):
    path = str(trained["scratch"] / "long.wav")
    _long_recording(path, rate=16000)
    clip = trained["held_out"][0]
    out = trained["scratch"]
    predict(run_cli, trained, "--format=csv", "--per_window", "--hop_seconds=0.5",
            f"--output={out / 'windows.csv'}", path, clip)
    predict(run_cli, trained, "--format=json", "--per_window", "--hop_seconds=0.5",
            f"--output={out / 'windows.json'}", path, clip)
    table = predict(run_cli, trained, "--top_k=2", "--hop_seconds=0.5", path, clip).stdout

    header, *rows = read_csv(out / "windows.csv")
    assert header == ["path", "start", "end", "label", "probability", *CLASSES]
    info = sf.info(clip)  # a clip shorter than 0.5 s, at its own rate: its resampled length
    clip_end = -(-info.frames * RATE // info.samplerate) / RATE
    assert [(r[0], float(r[1]), float(r[2])) for r in rows] == (
        [(path, 0.5 * i, 0.5 * i + 0.5) for i in range(8)] + [(clip, 0.0, clip_end)])
    records = json.loads((out / "windows.json").read_text())
    assert [r["path"] for r in records] == [path, clip]
    windows = [w for r in records for w in r["windows"]]
    for row, window in zip(rows, windows, strict=True):
        probabilities = [float(p) for p in row[5:]]
        assert list(window["probabilities"]) == list(CLASSES)
        assert list(window["probabilities"].values()) == pytest.approx(probabilities, abs=1e-12)
        assert (row[3], float(row[4])) == (window["label"], pytest.approx(window["probability"]))
        assert row[3] == CLASSES[int(np.argmax(probabilities))]
        assert float(row[4]) == max(probabilities) and sum(probabilities) == pytest.approx(1.0)
    for record in records:
        file_mean = np.mean([list(w["probabilities"].values()) for w in record["windows"]], axis=0)
        assert list(record["probabilities"].values()) == pytest.approx(file_mean)

    lines = table.splitlines()
    assert lines[0].split() == ["top", "1", "top", "2", "file"]
    assert lines[1].endswith(path) and lines[2].endswith(clip)
    for line, record in zip(lines[1:], records):
        cells = line.split()
        assert cells[0] == record["label"] and float(cells[1]) == round(record["probability"], 3)
        assert {cells[0], cells[2]} == set(CLASSES)


def _bad_and_odd_inputs(folder):
    """Inputs that must each give one error line, and odd ones that must classify."""
    rng = np.random.default_rng(3)
    tone = folder_fake.tone(rng, 250.0, 0.5, 44100, 1)
    (folder / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage" + bytes(100))
    sf.write(folder / "empty.wav", np.zeros((0, 1)), RATE, subtype="PCM_16")
    with_nan = tone.astype("float32")
    with_nan[100], with_nan[200] = np.nan, np.inf
    sf.write(folder / "nan.wav", with_nan, 44100, subtype="FLOAT")
    (folder / "no_audio").mkdir()
    (folder / "no_audio" / "notes.txt").write_text("not audio")
    bad = {"broken.wav": "cannot decode", "empty.wav": "holds no samples",
           "nan.wav": "NaN or infinite", "no_audio": "holds no audio files",
           "missing.wav": "does not exist"}
    odd = folder / "odd"
    odd.mkdir()
    sf.write(odd / "silence.wav", np.zeros(CLIP), RATE, subtype="PCM_16")
    sf.write(odd / "eight_channels.wav", np.repeat(tone, 8, axis=1), 44100, subtype="PCM_24")
    sf.write(odd / "4khz.wav", folder_fake.tone(rng, 250.0, 1.2, 4000, 1), 4000, subtype="PCM_16")
    sf.write(odd / "192khz.wav", folder_fake.tone(rng, 3000.0, 0.7, 192000, 2), 192000,
             subtype="PCM_24")
    sf.write(odd / "one_sample.wav", np.array([0.5]), RATE, subtype="PCM_16")
    sf.write(odd / "one_sample_44k.wav", np.array([0.5]), 44100, subtype="FLOAT")
    sf.write(odd / "extensible.wav", np.repeat(tone, 2, axis=1), 44100, format="WAVEX",
             subtype="PCM_24")
    sf.write(odd / "unsigned.wav", tone, 11025, subtype="PCM_U8")
    sf.write(odd / "a.flac", tone, 44100, subtype="PCM_16")
    sf.write(odd / "b.ogg", tone, 44100, subtype="VORBIS")
    if "MP3" in sf.available_formats():
        sf.write(odd / "c.mp3", tone, 44100, format="MP3", subtype="MPEG_LAYER_III")
    return bad, sorted(str(p) for p in odd.iterdir())


def test_bad_inputs_give_one_line_each_and_the_others_are_classified(trained, run_cli):
    folder = trained["scratch"] / "mixed"
    folder.mkdir()
    bad, odd = _bad_and_odd_inputs(folder)
    out = folder / "out.json"
    inputs = [str(folder / name) for name in bad] + [str(folder / "odd")]
    result = predict(run_cli, trained, "--format=json", "--per_window", f"--output={out}",
                     *inputs, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = error_lines(result)
    assert len(lines) == len(bad), result.stderr[-3000:]
    for line, (name, reason) in zip(lines, bad.items()):
        assert str(folder / name) in line and reason in line, line
    assert result.stderr.strip().splitlines()[-1] == (
        f"predict.py: {len(bad)} input(s) failed (listed above), {len(odd)} classified")
    records = json.loads(out.read_text())
    assert [r["path"] for r in records] == odd  # every odd file, in sorted order
    for record in records:
        values = [record["probabilities"]] + [w["probabilities"] for w in record["windows"]]
        for probabilities in values:
            p = np.array(list(probabilities.values()))
            assert np.isfinite(p).all() and p.sum() == pytest.approx(1.0), record["path"]


@pytest.fixture(scope="module")
def broken_runs(trained):
    """Copies of the trained run, each broken one way."""
    source, root = trained["model_dir"], trained["scratch"] / "runs"

    def copy(name):
        target = root / name
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("saved_model", "logs"))
        return target

    unfinished = copy("unfinished")  # still training: no metrics.json, no summary yet
    for name in ("fold1/run1/metrics.json", "fold1/run2/metrics.json", "summary.json"):
        os.remove(unfinished / name)
    failed = copy("failed")
    for run in ("run1", "run2"):
        os.remove(failed / "fold1" / run / "metrics.json")
    (failed / "summary.json").write_text('{"failed": {"fold1/run1": "NaN loss"}}')
    corrupt = copy("corrupt")
    model = corrupt / "fold1" / "run2" / "model.keras"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    renamed = copy("renamed")
    for run in ("run1", "run2"):
        metrics = renamed / "fold1" / run / "metrics.json"
        record = json.loads(metrics.read_text())
        metrics.write_text(json.dumps(dict(record, class_names=["cat", "dog"])))
    resampled = copy("resampled")
    metrics = resampled / "fold1" / "run1" / "metrics.json"
    metrics.write_text(json.dumps(dict(json.loads(metrics.read_text()), sample_rate=16000)))
    return dict(unfinished=unfinished, failed=failed, corrupt=corrupt, renamed=renamed,
                resampled=resampled, missing=root / "nothing_here")


@pytest.mark.parametrize("case, flags, fragments", [
    ("missing", [], ["does not exist"]),
    ("unfinished", [], ["no finished model yet", "rerun its train.py command"]),
    ("failed", [], ["ended without a finished model", "summary.md"]),
    ("corrupt", [], ["fold1/run2/model.keras", "damaged", "retrain that model"]),
    ("renamed", ["--model_dir={trained}"], ["different class_names"]),
    ("resampled", [], ["different sample_rate"]),
])
def test_unusable_model_dirs_give_one_line(case, flags, fragments, trained, broken_runs, run_cli,
                                            assert_one_line_error):
    out = trained["scratch"] / f"{case}.csv"
    extra = [f.format(trained=trained["model_dir"]) for f in flags]
    result = run_cli("predict.py", f"--model_dir={broken_runs[case]}", *extra,
                     "--format=csv", f"--output={out}", trained["held_out"][0], check=False)
    assert_one_line_error(result, "predict.py", str(broken_runs[case]), *fragments)
    assert not os.path.exists(out)
    assert not [p for p in os.listdir(out.parent) if p.startswith(f"{case}.tmp")]


def test_bad_flags_no_inputs_and_unusable_outputs_give_one_line(
        trained, run_cli, assert_one_line_error):
    folder = trained["scratch"]
    result = predict(run_cli, trained, f"--output={folder}", trained["held_out"][0], check=False)
    assert_one_line_error(result, "predict.py", str(folder), "is a directory")
    missing = folder / "no_such_folder" / "out.csv"
    result = predict(run_cli, trained, f"--output={missing}", trained["held_out"][0], check=False)
    assert_one_line_error(result, "predict.py", "does not exist")
    result = predict(run_cli, trained, "--hop_seconds=2", trained["held_out"][0], check=False)
    assert_one_line_error(result, "predict.py", "--hop_seconds=2", "0.5 s")
    result = predict(run_cli, trained, check=False)
    assert_one_line_error(result, "predict.py", "give the audio files or folders to classify")


def test_a_progress_bar_only_on_a_terminal(trained, run_cli):
    clip = trained["held_out"][0]
    piped = predict(run_cli, trained, "--format=csv", clip, clip)
    assert "%|" not in piped.stderr and "2/2" not in piped.stderr
    main, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    process = subprocess.Popen(
        [sys.executable, "predict.py", f"--model_dir={trained['model_dir']}", "--format=csv",
         clip, clip], stdout=subprocess.PIPE, stderr=terminal, env=env, cwd=ROOT)
    os.close(terminal)
    shown = b""
    while True:  # read the terminal as it is written, until the program closes it
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: no writer left
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    stdout = process.stdout.read().decode()
    assert process.wait(timeout=600) == 0
    shown = shown.decode(errors="replace")
    assert "100%|" in shown and "2/2" in shown and "files 2/2" in shown, shown[-500:]
    assert len(list(csv.reader(io.StringIO(stdout)))) == 3  # the header and two rows


def test_a_clip_length_16_bit_file_gives_exactly_the_waveform_training_saw(tmp_path):
    from keras_audio_cnn import audio_stream

    pcm = np.random.default_rng(0).integers(-32768, 32768, CLIP).astype(np.int16)
    sf.write(tmp_path / "clip.wav", pcm, RATE, subtype="PCM_16")
    (start, window), = audio_stream.Recording(str(tmp_path / "clip.wav"), RATE, CLIP, CLIP // 2)
    assert start == 0 and window.dtype == np.float32
    assert np.array_equal(window, pcm.astype(np.float32) * np.float32(1 / 32768))


@pytest.mark.parametrize("rate, frames, channels, subtype", [
    (8000, 3000, 2, "PCM_24"), (44100, 22050, 2, "FLOAT"), (11025, 100000, 1, "PCM_16"),
    (192000, 300000, 8, "PCM_24"), (4000, 1500, 1, "PCM_U8"), (44100, 1, 1, "PCM_16")])
def test_windows_hold_what_load_clip_gives_whatever_the_block_size(rate, frames, channels,
                                                                    subtype, tmp_path):
    """Streaming (decode and soxr resampling in blocks) equals training's one-shot decode."""
    from keras_audio_cnn import audio_stream
    from tfds_builders.audio_io import load_clip

    path = str(tmp_path / "x.wav")
    sf.write(path, np.random.default_rng(1).normal(0, 0.2, (frames, channels)), rate,
             subtype=subtype)
    length = -(-frames * RATE // rate)
    whole = np.zeros(length + 2 * CLIP, np.float32)
    whole[:length] = load_clip(path, RATE, length) / np.float32(32768)
    for block in (999, 1 << 16):
        recording = audio_stream.Recording(path, RATE, CLIP, 1500, block_frames=block)
        windows = list(recording)
        assert [s for s, _ in windows] == audio_stream.window_starts(length, CLIP, 1500)
        assert recording.length == length
        for start, window in windows:
            assert np.array_equal(window, whole[start:start + CLIP]), (block, start)


def test_a_long_recording_streams_in_bounded_memory(tmp_path):
    """20 minutes at 44.1 kHz (106 MB as float64) pass through with a few MB of arrays."""
    import tracemalloc

    from keras_audio_cnn import audio_stream

    path = tmp_path / "long.wav"
    rng = np.random.default_rng(2)
    with sf.SoundFile(path, "w", 44100, 1, subtype="PCM_16") as f:
        for _ in range(20 * 60):
            f.write(rng.normal(0, 0.1, 44100))
    tracemalloc.start()
    count = sum(1 for _ in audio_stream.Recording(str(path), RATE, CLIP, CLIP // 2))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 2 * 20 * 60 * 2 - 1  # 0.25 s hops over 1200 s, the last ending at the end
    assert peak < 8e6, peak


def test_the_models_are_traced_once_for_every_batch_size_and_every_call(trained):
    """Tracing a backbone takes seconds (about 5 s for DenseNet201): a last, partial batch
    and a second `classify` call on the same ensemble reuse the first trace."""
    from keras_audio_cnn import ensemble as ensemble_lib, predict as predict_lib

    ensemble = ensemble_lib.load_ensemble([trained["model_dir"]], log=lambda line: None)
    files = trained["held_out"][:3]
    first = [r.probabilities for r in predict_lib.classify(files, ensemble, batch_size=2)]
    second = [r.probabilities for r in predict_lib.classify(files, ensemble, batch_size=2)]
    assert ensemble.logits_function().experimental_get_tracing_count() == 1
    np.testing.assert_array_equal(first, second)


def test_a_reader_that_goes_away_ends_predict_quietly(trained):
    """`predict.py ... | head`: when stdout's reader has gone, predict.py stops with status
    1 and no traceback (as Unix tools stop), not with a BrokenPipeError."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will read: the first write fails
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    process = subprocess.run(
        [sys.executable, "predict.py", f"--model_dir={trained['model_dir']}", "--format=csv",
         *trained["held_out"]], stdout=write_end, stderr=subprocess.PIPE, text=True, env=env,
        cwd=ROOT, timeout=600)
    os.close(write_end)
    assert process.returncode == 1, process.stderr[-2000:]
    assert "Traceback" not in process.stderr and "BrokenPipe" not in process.stderr, \
        process.stderr[-2000:]


def test_mixed_precision_computes_the_backbones_in_half_precision_with_float32_labels(
        trained, run_cli):
    """`--precision=mixed`: where the CPU has bfloat16 instructions (or a GPU float16), the
    backbones compute in it and the probabilities stay close to float32's; elsewhere
    predict.py says it computes in float32 and gives float32's probabilities."""
    from keras_audio_cnn import devices, ensemble as ensemble_lib, model as model_lib
    from keras_audio_cnn.errors import ConfigError

    found = devices.detect()
    notes = []
    mixed = ensemble_lib.load_ensemble([trained["model_dir"]], log=notes.append,
                                       precision="mixed")
    backbone = model_lib.get_backbone(mixed.models[0])
    expected = devices.resolve("mixed", "false", found).dtype_policy
    assert mixed.dtype_policy == expected
    half = {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}.get(expected, "float32")
    assert {layer.compute_dtype for layer in backbone.layers} == {half}
    assert mixed.models[0].get_layer("predictions").compute_dtype == "float32"
    assert any("computing in float32" in n for n in notes) == (half == "float32")

    with pytest.raises(ConfigError, match="precision 'bfloat16': use one of float32, mixed"):
        ensemble_lib.load_ensemble([trained["model_dir"]], precision="bfloat16")

    outputs = {}
    for precision in ("float32", "mixed"):
        out = trained["scratch"] / f"precision_{precision}.json"
        result = predict(run_cli, trained, "--format=json", f"--output={out}",
                         f"--precision={precision}", *trained["held_out"])
        outputs[precision] = json.loads(out.read_text())
        if precision == "mixed" and half == "float32":
            assert "computing in float32" in result.stderr
    as_float32, as_mixed = ([f["probabilities"] for f in outputs[p]] for p in ("float32", "mixed"))
    assert [f["label"] for f in outputs["mixed"]] == [f["label"] for f in outputs["float32"]]
    difference = np.abs(np.array([[p[c] for c in CLASSES] for p in as_mixed])
                        - np.array([[p[c] for c in CLASSES] for p in as_float32])).max()
    if half == "float32":
        assert difference == 0
    else:  # bfloat16 keeps 8 bits of mantissa: about 2 significant digits per value
        assert 0 < difference < 0.05


def test_loaded_models_compute_the_frontend_per_clip_as_built_ones_do(trained):
    """Models loaded from model.keras have Keras's batched MelSpectrogram layers; predict.py
    and evaluate.py switch them to the per-clip kernel a freshly built model has (on a
    CPU), which gives the same images faster."""
    import tensorflow as tf

    from keras_audio_cnn import ensemble as ensemble_lib, evaluation, frontend

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("on a GPU the frontend computes whole batches")
    ensemble = ensemble_lib.load_ensemble([trained["model_dir"]], log=lambda line: None)
    ensemble.logits_function()
    run_dir = ensemble.members[0]
    mel_layers = lambda model: [layer for layer in model.layers  # noqa: E731
                                if layer.name.startswith("logmel_") and hasattr(layer, "fft_length")]
    assert len(mel_layers(ensemble.models[0])) == 3
    assert all(getattr(layer, frontend._PER_CLIP, False)
               for model in ensemble.models for layer in mel_layers(model))
    batched = evaluation.load_model(run_dir)
    assert not any(getattr(layer, frontend._PER_CLIP, False) for layer in mel_layers(batched))
    waveforms = np.random.default_rng(3).uniform(-0.5, 0.5, (4, CLIP)).astype("float32")
    image = lambda model: tf.keras.Model(  # noqa: E731
        model.input, model.get_layer(frontend.IMAGE_LAYER).output)(waveforms).numpy()
    np.testing.assert_allclose(image(ensemble.models[0]), image(batched), atol=1e-4)
