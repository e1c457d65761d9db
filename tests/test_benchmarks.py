"""The benchmark harness: statistics, interleaved trials in side processes, the table.

No speed is asserted here: speeds live in `python -m benchmarks`.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from benchmarks import common, harness, torch_sides

TINY_SIDE = "tests.bench_helpers:tiny_side"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_summarize_gives_median_range_and_flags_a_wide_spread():
    steady = common.summarize([10.0, 11.0, 9.0, 10.5, 9.5])
    assert (steady["median"], steady["min"], steady["max"], steady["trials"]) == (10.0, 9.0, 11.0, 5)
    assert steady["spread"] == pytest.approx(0.2) and not steady["unstable"]
    wide = common.summarize([10.0, 13.0, 9.0, 10.0, 10.0])
    assert wide["unstable"] and wide["spread"] == pytest.approx(0.4)
    table = common.format_table([common.row("1 x", "ours", "a thing", "clips/s", stats=wide,
                                            trial_seconds=2.0)])
    assert "spread 40% > 20%" in table and "5 x 2.0" in table and "10.0 clips/s" in table


def test_sides_run_in_their_own_processes_and_take_turns(tmp_path):
    workers = [harness.Worker(name, TINY_SIDE, {"items": items},
                              log_dir=str(tmp_path)).wait_ready()
               for name, items in (("a", 2), ("b", 5))]
    try:
        order = []
        results = harness.interleave(workers, 3, 0.01, log=order.append)
        assert [line.split()[2].rstrip(":") for line in order] == ["a", "b"] * 3
        assert [w.info for w in workers] == [{"items": 2}, {"items": 5}]
        for worker, items in zip(workers, (2, 5)):
            trials = results[worker.name]
            assert len(trials) == 3
            assert all(t["items"] == items * t["calls"] and t["seconds"] >= 0.01 for t in trials)
            assert all(rate > 0 for rate in harness.rates(trials))
        # Each process counts its own calls: 2 warm-up calls, then the trials'.
        extras = workers[0].finish()
        assert extras["calls_seen"] == 2 + sum(t["calls"] for t in results["a"])
    finally:
        for worker in workers:
            worker.close()


def test_a_side_that_fails_to_set_up_says_so_with_its_log(tmp_path):
    worker = harness.Worker("broken", TINY_SIDE, {"fail": True},
                            log_dir=str(tmp_path))
    with pytest.raises(harness.SideFailed, match="cannot be set up"):
        worker.wait_ready()
    worker.close()


def test_the_reference_mel_filter_bank_is_the_frontends():
    # torchaudio's HTK filters without normalisation, as the reference builds them,
    # are keras.layers.MelSpectrogram's (the frontend's) bands for ESC-50's settings;
    # the triangles are linear in Hz there and in mel here (at most 0.0034 apart).
    layer = keras.layers.MelSpectrogram(fft_length=4410, sampling_rate=44100, num_mel_bins=128,
                                        min_freq=0.0, max_freq=22050.0)
    keras_filters = keras.ops.convert_to_numpy(
        layer.linear_to_mel_weight_matrix(128, 2206, 44100, 0.0, 22050.0))
    np.testing.assert_allclose(torch_sides.mel_filter_bank(44100), keras_filters, atol=4e-3)


def test_multiply_accumulates_counts_convolutions_and_dense_layers_by_hand():
    import keras

    from benchmarks import compute_floor

    inputs = keras.Input((8, 10, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8*10*4 outputs, 3*3*3 each
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(x)  # 4*5*4, 3*3 each
    x = keras.layers.Conv2D(6, 1, groups=2)(x)  # 4*5*6 outputs, 1*1*(4/2) each
    nested = keras.Model(inputs, x)
    outer_in = keras.Input((8, 10, 3))
    y = keras.layers.GlobalAveragePooling2D()(nested(outer_in))
    model = keras.Model(outer_in, keras.layers.Dense(7)(y))  # 6*7
    assert compute_floor.multiply_accumulates(model) == (
        8 * 10 * 4 * 27 + 4 * 5 * 4 * 9 + 4 * 5 * 6 * 2 + 6 * 7)


def _fake_python(path, script):
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return str(path)


def test_the_reference_network_runs_on_the_projects_kind_of_device_or_is_not_measured(tmp_path):
    # An interpreter whose torch imports but sees no CUDA GPU (a CPU build, a driver
    # mismatch): beside a project on the GPU, its network sides would time a CPU.
    cpu_torch = _fake_python(tmp_path / "cpu_torch", 'echo "2.14.1 False"')
    missing, no_cuda = common.torch_notes(cpu_torch, need_cuda=True)
    assert missing is None
    assert no_cuda.startswith("not measured: torch 2.14.1 in ") and "sees no CUDA GPU" in no_cuda
    assert common.torch_notes(cpu_torch, need_cuda=False) == (None, None)
    gpu_torch = _fake_python(tmp_path / "gpu_torch", 'echo "2.14.1+cu128 True"')
    assert common.torch_notes(gpu_torch, need_cuda=True) == (None, None)
    broken = _fake_python(tmp_path / "no_torch", "exit 1")
    missing, no_cuda = common.torch_notes(broken, need_cuda=True)
    assert "torch and torchvision do not import in" in missing and no_cuda is None


def test_the_gpu_preset_without_a_gpu_is_refused_in_one_line_before_anything_is_written(
        tmp_path):
    work, output = tmp_path / "work", tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--preset=gpu", f"--work_dir={work}",
         f"--output={output}"], capture_output=True, text=True, cwd=ROOT, timeout=300,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "benchmarks: error: --preset=gpu, but TensorFlow sees no GPU here (check "
        "CUDA_VISIBLE_DEVICES and the driver with nvidia-smi); on a CPU run the default preset"]
    assert result.stdout == "" and not work.exists() and not output.exists()


def test_the_benchmark_command_prints_and_writes_its_table(tmp_path):
    # The whole command on its shortest benchmark: side processes, interleaved trials,
    # the reference image check, the rows and the JSON beside them. Its speeds are not
    # asserted (no timed tests), only that each side was timed as asked.
    work, output = tmp_path / "work", tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--preset=smoke", "--only=frontend", "--trials=2",
         "--seconds=0.2", f"--work_dir={work}", f"--output={output}"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    assert result.returncode == 0, result.stderr[-2000:]
    written = json.loads(output.read_text())
    assert written["preset"] == "smoke" and written["machine"]["gpus"] == "none"
    rows = {row["side"]: row for row in written["rows"]}
    assert set(rows) == {"ours", "fft_floor", "reference"}
    for side in ("ours", "fft_floor"):
        stats = rows[side]["stats"]
        assert stats["trials"] == 2 and 0 < stats["min"] <= stats["median"] <= stats["max"]
        assert rows[side]["trial_seconds"] >= 0.2
    ours = rows["ours"]
    assert ours["ratio"] == pytest.approx(ours["stats"]["median"]
                                          / rows["fft_floor"]["stats"]["median"])
    assert ours["met"] == (ours["stats"]["median"] >= 90)  # the image check passed: <= 0.1 dB
    info = written["sides"]["frontend"]["ours"]["info"]
    assert info["max_db_difference"] <= 0.1 and info["per_clip_frontend"]
    if rows["reference"]["stats"] is None:  # torch is an optional extra
        assert rows["reference"]["note"].startswith("not measured: torch and torchvision")
    assert (work / "logs" / "frontend.ours.log").exists()
    table = result.stdout[result.stdout.index("Measured on: "):]
    assert "| 1 frontend | ours: " in table and f"Wrote {output}" in table
