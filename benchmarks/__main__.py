"""Runs the benchmarks, prints a table and writes it as JSON.

    python -m benchmarks                        # everything, about 35 min on 2 CPU cores
                                                # and 9 min more for the CNN14 pair
    python -m benchmarks --only=frontend,train_step
    python -m benchmarks --only=cnn14_train_step,cnn14_inference   # PANNs CNN14 vs PyTorch
    python -m benchmarks --preset=gpu           # on a GPU machine: frontend, train step,
                                                # inference, under 10 min
    python -m benchmarks --preset=smoke         # MobileNetV3Small, 1 s trials: checks the harness

Every timed side runs in its own process, set up and warmed once; then the sides
of a benchmark take turns, one trial each (A B C A B C ...), `--trials` rounds,
and the table gives each side's median with its min and max. The PyTorch sides
(the paper's pipeline, and PANNs' own CNN14) run under `--torch_python` and are
skipped with a note when torch and torchvision (for CNN14: torch, torchlibrosa and
panns_inference, `pip install -e ".[test]"`) do not import there.
The generated ESC-50-sized archives (about 1.1 GB) stay in --work_dir for reuse;
each side's log is in --work_dir/logs.
"""

import importlib.util
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The sides of a benchmark live side by side: on a GPU each TensorFlow process takes
# only the memory it uses (by default the first would take it all).
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

from absl import app, flags  # noqa: E402

from benchmarks import common  # noqa: E402  (no TensorFlow at import)

BENCHMARKS = ("frontend", "train_step", "inference", "preparation", "pipeline", "memory",
              "cnn14_train_step", "cnn14_inference")
# Trials per side, each at least this long (s), per benchmark.
PRESETS = {
    "cpu": {"only": BENCHMARKS, "backbone": "DenseNet201", "torch_model": "densenet201",
            "seconds": {"frontend": 10, "train_step": 20, "inference": 15, "pipeline": 5,
                        "cnn14_train_step": 20, "cnn14_inference": 15}},
    "gpu": {"only": ("frontend", "train_step", "inference"), "backbone": "DenseNet201",
            "torch_model": "densenet201",
            "seconds": {"frontend": 5, "train_step": 5, "inference": 5}},
    "smoke": {"only": ("frontend", "train_step", "inference"), "backbone": "MobileNetV3Small",
              "torch_model": "mobilenet_v3_small",
              "seconds": {"frontend": 1, "train_step": 1, "inference": 1, "pipeline": 1}},
}

flags.DEFINE_enum("preset", "cpu", list(PRESETS),
                  "cpu: every benchmark, DenseNet201 (about 35 min on 2 cores, and 9 min for the "
                  "CNN14 pair); gpu: frontend, "
                  "train step and inference with short trials (under 10 min on one GPU); smoke: "
                  "MobileNetV3Small, 1 s trials, to check that every side runs.")
flags.DEFINE_list("only", None, f"Benchmarks to run, of: {', '.join(BENCHMARKS)} "
                  "(default: the preset's).")
flags.DEFINE_integer("trials", 5, "Trials per side (at least 5 for figures to report).")
flags.DEFINE_float("seconds", None, "Least length of every trial (default: the preset's).")
flags.DEFINE_string("backbone", None, "Backbone of the train-step and inference benchmarks "
                    "(default: the preset's).")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                  "train.py's --jit_compile for the project's train step.")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed"],
                  "train.py's --precision for the project's train step (the paper's: float32).")
flags.DEFINE_string("torch_python", sys.executable,
                    "The Python that runs the PyTorch sides (one with torch and torchvision).")
flags.DEFINE_string("work_dir", os.path.join("runs", "benchmarks", "work"),
                    "Where generated archives, prepared datasets and side logs are kept.")
flags.DEFINE_string("output", os.path.join("runs", "benchmarks", "results.json"),
                    "The JSON file of results (the table is printed too).")
FLAGS = flags.FLAGS

SIDES_TF, SIDES_TORCH = "benchmarks.sides", "benchmarks.torch_sides"
SIDES_PANNS = "benchmarks.panns_sides"


def _plain_env(onednn=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    if onednn:
        env["TF_ENABLE_ONEDNN_OPTS"] = "1"
    return env


def _litert_sides(backbone):
    """The `.tflite` export, dynamic-range quantized, on a CPU run (not with --preset=gpu:
    LiteRT runs on the CPU there too); a note where ai_edge_litert is not installed."""
    if FLAGS.preset == "gpu":
        return []
    if importlib.util.find_spec("ai_edge_litert") is None:
        return [("litert_dynamic", None, 'ai_edge_litert is not installed (pip install -e ".[litert]")')]
    return [("litert_dynamic", f"{SIDES_TF}:ours_litert_inference",
             {"backbone": backbone, "quantize": "dynamic"}, None, None)]


def _plain_keras_sides(benchmark, backbone, log):
    """plain Keras with TensorFlow's defaults; with oneDNN forced on too where the default is off."""
    target = f"{SIDES_TF}:plain_{'train' if benchmark == 'train_step' else 'inference'}"
    sides = [("plain_keras", target, {"backbone": backbone}, None, _plain_env())]
    default = common.probe(sys.executable, "from tensorflow.python.util import "
                           "_pywrap_util_port as p; print(p.IsMklEnabled())", env=_plain_env())
    if default == "False" and benchmark == "train_step":
        log("  TensorFlow leaves oneDNN off by default on this CPU: plain Keras is measured "
            "with TF_ENABLE_ONEDNN_OPTS=1 too")
        sides.append(("plain_keras_onednn", target, {"backbone": backbone}, None,
                      _plain_env(onednn=True)))
    return sides


def timed_benchmark(name, sides, trials, seconds, log_dir, log):
    """Starts each side (one after another), interleaves their trials, closes them.

    `sides` are `(side name, "module:function", options, python, env)`, or
    `(side name, None, note)` for a side that cannot run here. Returns
    `({side: summary dict}, load (before, after))`.
    """
    from benchmarks import harness

    results, workers = {}, []
    try:
        for side in sides:
            if side[1] is None:
                results[side[0]] = {"note": side[2]}
                continue
            side_name, target, options, python, env = side
            log(f"  starting {side_name} ({target})")
            worker = harness.Worker(f"{name}.{side_name}", target, options, python=python,
                                    env=env, log_dir=log_dir)
            try:
                workers.append(worker.wait_ready())
                log(f"  {side_name} ready after {worker.setup_seconds:.0f} s: {worker.info}")
            except harness.SideFailed as error:
                log(f"  {side_name} FAILED: {error}")
                results[side_name] = {"note": f"failed, see {worker.log_path}"}
        load_before = common.load_average()
        log(f"  load average before the trials: {load_before}")
        trials_by_side = harness.interleave(workers, trials, seconds, log=log)
        load_after = common.load_average()
        log(f"  load average after the trials: {load_after}")
        for worker in workers:
            side_trials = trials_by_side[worker.name]
            extras = worker.finish()
            results[worker.name.split(".", 1)[1]] = {
                "stats": common.summarize(harness.rates(side_trials)),
                "trial_seconds": sum(t["seconds"] for t in side_trials) / len(side_trials),
                "trials": side_trials, "info": worker.info,
                "setup_seconds": worker.setup_seconds, "extras": extras}
        return results, (load_before, load_after)
    finally:
        for worker in workers:
            worker.close()


def _side_row(benchmark, side, what, unit, result, load, **kwargs):
    if "stats" not in result:
        return common.row(benchmark, side, what, unit, note=result["note"], load=load)
    return common.row(benchmark, side, what, unit, stats=result["stats"],
                      trial_seconds=result["trial_seconds"], load=load, **kwargs)


def _ratio(results, side, reference):
    if "stats" in results.get(side, {}) and "stats" in results.get(reference, {}):
        return results[side]["stats"]["median"] / results[reference]["stats"]["median"]
    return None


def frontend_rows(results, load):
    ours = results.get("ours", {})
    vs_floor = _ratio(results, "ours", "fft_floor")
    vs_reference = _ratio(results, "ours", "reference")
    info = ours.get("info", {})
    accurate = info.get("max_db_difference", float("inf")) <= 0.1
    met = None
    if "stats" in ours:
        met = ours["stats"]["median"] >= 90 and accurate
    note = ""
    if info:
        note = (f"largest difference from the reference image {info['max_db_difference']:.3f} dB "
                f"(mean {info['mean_db_difference']:.4f})")
        if vs_reference:
            note += f"; {vs_reference:.2f}x the reference's per-clip frontend"
    what = "3-channel log-mel images of 5 s 44.1 kHz clips"
    return [
        _side_row("1 frontend", "ours", f"{what}, batch 32 in the model's graph", "clips/s",
                  ours, load, ratio=vs_floor, reference="fft_floor",
                  target=">= 90 clips/s (80% of the issue machine's FFT floor), <= 0.1 dB",
                  met=met, note=note),
        _side_row("1 frontend", "fft_floor", "the 803 real FFTs of 4410 points a clip alone "
                  "(tf.signal.rfft on framed data)", "clips/s", results.get("fft_floor", {}),
                  load, note="a floor under any FFT-based frontend"),
        _side_row("1 frontend", "reference", f"{what}: the paper's per clip (torch.stft mel x 3, "
                  "log, PIL bilinear resize)", "clips/s", results.get("reference", {}), load),
    ]


def train_rows(results, load, backbone, batch, torch_model):
    ratio = _ratio(results, "ours", "reference")
    ours = results.get("ours", {})
    wait = ours.get("extras", {}).get("input_wait")
    note = "waveforms in: frontend, Augment (half the batch flagged), L2 penalty, Adam"
    if ours.get("info"):
        info = ours["info"]
        note += (f"; {info['dtype_policy']}, XLA {'on' if info['jit_compile'] else 'off'}, "
                 f"oneDNN {'on' if info['onednn'] else 'off'}")
    rows = [_side_row("2 train step", "ours", f"{backbone}, batch {batch}, train.py's model",
                      "samples/s", ours, load, ratio=ratio, reference="reference",
                      target=">= 1.0x reference", met=None if ratio is None else ratio >= 1.0,
                      note=note)]
    for side, what in (("plain_keras", "keras.applications + train_on_batch on images, "
                        "TensorFlow's defaults"),
                       ("plain_keras_onednn", "the same with TF_ENABLE_ONEDNN_OPTS=1")):
        if side in results:
            info = results[side].get("info", {})
            rows.append(_side_row(
                "2 train step", side, f"{backbone}, batch {batch}, {what}", "samples/s",
                results[side], load, ratio=_ratio(results, side, "reference"),
                reference="reference",
                note=f"oneDNN {'on' if info.get('onednn') else 'off'}" if info else ""))
    rows.append(_side_row(
        "2 train step", "reference", f"torchvision {torch_model}, batch {batch}, Adam(1e-4, "
        "weight_decay=1e-3) on precomputed 3x128x250 images", "samples/s",
        results.get("reference", {}), load,
        note="the paper's code trains from pickled images: no frontend in its step"))
    if wait is not None:
        rows.append(common.row("3 input pipeline", "ours", f"share of {backbone} training-step "
                               "time spent waiting for train.py's input pipeline", "%",
                               value=100 * wait, note=f"batch {batch}, 6 steps, after the trials"))
    return rows


def inference_rows(results, load, backbone, batch, torch_model):
    what = f"{backbone}, waveform to probabilities, batch {batch}"

    def ours(side, how, note=""):
        ratio = _ratio(results, side, "reference")
        return _side_row("2 inference", side, f"{what}: {how}", "clips/s", results.get(side, {}),
                         load, ratio=ratio, reference="reference", target=">= 2.5x reference",
                         met=None if ratio is None else ratio >= 2.5, note=note)

    policy = results.get("ours_mixed", {}).get("info", {}).get("dtype_policy", "")
    against_mixed = _ratio(results, "ours_mixed", "reference_mixed")
    mixed_note = ""
    if policy:
        mixed_note = f"{policy}: " + ("probabilities slightly off float32's" if policy != "float32"
                                      else "no bfloat16 instructions on this CPU, so float32")
    if against_mixed:
        mixed_note += f"; {against_mixed:.2f}x reference_mixed"
    return [
        ours("ours", "a fold model's inference function (predict.py)"),
        ours("ours_mixed", "the same, backbone in mixed precision (predict.py --precision=mixed)",
             note=mixed_note),
        _side_row("2 inference", "litert_dynamic", f"{what}: export.py's .tflite "
                  "(--quantize=dynamic), clip by clip in ai_edge_litert", "clips/s",
                  results.get("litert_dynamic", {}), load,
                  ratio=_ratio(results, "litert_dynamic", "reference"), reference="reference",
                  note="int8 weights: another model, its accuracy not the Keras model's"),
        _side_row("2 inference", "plain_keras", f"{what}: 3 MelSpectrogram + Resizing + "
                  "keras.applications, predict", "clips/s", results.get("plain_keras", {}), load,
                  ratio=_ratio(results, "plain_keras", "reference"), reference="reference"),
        _side_row("2 inference", "reference", f"{what}: the paper's per-clip images, then "
                  f"torchvision {torch_model} in eval mode", "clips/s",
                  results.get("reference", {}), load),
        _side_row("2 inference", "reference_mixed", f"{what}: the same, the network under "
                  "torch.autocast (bfloat16 on a CPU, float16 on a GPU)", "clips/s",
                  results.get("reference_mixed", {}), load,
                  note="not the paper's code, which runs float32: what its users get with "
                  "autocast on"),
    ]


def cnn14_rows(benchmark, results, load, batch):
    """The CNN14 rows: the Keras port against the authors' PyTorch network."""
    ratio = _ratio(results, "ours", "reference")
    training = benchmark == "cnn14_train_step"
    target = 1.0 if training else 1.3
    what = (f"CNN14, batch {batch} of 5 s 32 kHz waveforms, a 50-class head, "
            + ("SpecAugment on every clip, Adam with AMSGrad" if training
               else "waveform to probabilities"))
    unit = "samples/s" if training else "clips/s"
    how = ("train.py's training model" if training else "a fold model's inference function "
           "(predict.py)")
    return [
        _side_row(f"6 {benchmark}", "ours", f"{what}: {how}", unit, results.get("ours", {}),
                  load, ratio=ratio, reference="reference", target=f">= {target}x reference",
                  met=None if ratio is None else ratio >= target),
        _side_row(f"6 {benchmark}", "reference", f"{what}: panns_inference's Cnn14 "
                  f"({'train' if training else 'eval'} mode)", unit,
                  results.get("reference", {}), load),
    ]


def main(argv):
    if len(argv) > 1:
        sys.exit(f"benchmarks: error: unexpected arguments {argv[1:]}")
    preset = PRESETS[FLAGS.preset]
    only = FLAGS.only or list(preset["only"])
    unknown = [name for name in only if name not in BENCHMARKS]
    if unknown:
        sys.exit(f"benchmarks: error: unknown benchmark {unknown[0]!r}; "
                 f"choose from {', '.join(BENCHMARKS)}")
    timed = bool({"frontend", "train_step", "inference", "cnn14_train_step",
                  "cnn14_inference"} & set(only))
    gpus = common.tensorflow_gpus() if timed or FLAGS.preset == "gpu" else 0
    if FLAGS.preset == "gpu" and not gpus:
        sys.exit("benchmarks: error: --preset=gpu, but TensorFlow sees no GPU here (check "
                 "CUDA_VISIBLE_DEVICES and the driver with nvidia-smi); on a CPU run the "
                 "default preset")
    backbone = FLAGS.backbone or preset["backbone"]
    seconds = {name: FLAGS.seconds or preset["seconds"].get(name, 5) for name in BENCHMARKS}
    from benchmarks import sides

    log_dir = os.path.join(FLAGS.work_dir, "logs")
    os.makedirs(log_dir, exist_ok=True)
    rows, details = [], {}

    def log(message):
        print(message, flush=True)

    def report(new_rows):
        rows.extend(new_rows)
        print(common.format_table(new_rows), flush=True)

    torch_missing = torch_no_cuda = None
    # The reference's network on the project's kind of device: on the GPU where
    # TensorFlow has one, else on the CPU (also where only torch sees a GPU).
    torch_env = None if gpus else dict(os.environ, CUDA_VISIBLE_DEVICES="")
    cnn14_torch_missing = None
    if timed:
        torch_missing, torch_no_cuda = common.torch_notes(FLAGS.torch_python, need_cuda=bool(gpus))
        for note in (torch_missing, torch_no_cuda):
            if note:
                log(f"PyTorch sides: {note}")
        if {"cnn14_train_step", "cnn14_inference"} & set(only):
            missing, no_cuda = common.torch_notes(
                FLAGS.torch_python, need_cuda=bool(gpus),
                modules=("torchlibrosa", "panns_inference"), install=".[test]")
            cnn14_torch_missing = missing or no_cuda
            if cnn14_torch_missing:
                log(f"CNN14 PyTorch side: {cnn14_torch_missing}")

    def torch_side(target, name="reference", **options):
        if torch_missing or (torch_no_cuda and target != "reference_frontend"):
            return (name, None, torch_missing or torch_no_cuda)
        if target != "reference_frontend":
            options["model"] = preset["torch_model"]
        return (name, f"{SIDES_TORCH}:{target}", options, FLAGS.torch_python, torch_env)

    load = common.load_average()
    if load and load[0] > 0.25 * len(os.sched_getaffinity(0)):
        log(f"WARNING: load average {load} before the run on {len(os.sched_getaffinity(0))} "
            "cores: other jobs are running, and the figures will be figures under load "
            "(PyTorch's OpenMP threads suffer most: see docs/speed.md, PyTorch under load)")
    lengths = ", ".join(f"{seconds[name]:g} s ({name})" for name in only
                        if name in preset["seconds"])
    log(f"preset {FLAGS.preset}: {', '.join(only)}; {FLAGS.trials} interleaved trials per "
        f"side of at least {lengths}; backbone {backbone}; PyTorch sides under "
        f"{FLAGS.torch_python}")
    if "frontend" in only:
        log("1 frontend")
        results, load = timed_benchmark("frontend", [
            ("ours", f"{SIDES_TF}:ours_frontend", {}, None, None),
            ("fft_floor", f"{SIDES_TF}:fft_floor", {}, None, None),
            torch_side("reference_frontend"),
        ], FLAGS.trials, seconds["frontend"], log_dir, log)
        details["frontend"] = results
        report(frontend_rows(results, load))
    source, data_dir, manual_dir = None, None, None
    if {"preparation", "pipeline"} & set(only):
        from benchmarks import data

        log("4 preparation")
        prep_rows, source = data.preparation(FLAGS.work_dir,
                                             FLAGS.trials if "preparation" in only else 1)
        data_dir, manual_dir = data.full_dataset(FLAGS.work_dir)
        if "preparation" in only:
            report(prep_rows)
    if "pipeline" in only:
        log("3 input pipeline")
        report(data.pipeline(source, FLAGS.trials, seconds["pipeline"]))
    if "train_step" in only:
        log("2 train step")
        ours = {"backbone": backbone, "jit_compile": FLAGS.jit_compile,
                "precision": FLAGS.precision, "data_dir": data_dir, "manual_dir": manual_dir}
        results, load = timed_benchmark("train_step", [
            ("ours", f"{SIDES_TF}:ours_train", ours, None, None),
            *_plain_keras_sides("train_step", backbone, log),
            torch_side("reference_train"),
        ], FLAGS.trials, seconds["train_step"], log_dir, log)
        details["train_step"] = results
        report(train_rows(results, load, backbone, sides.TRAIN_BATCH, preset["torch_model"]))
    if "inference" in only:
        log("2 inference")
        results, load = timed_benchmark("inference", [
            ("ours", f"{SIDES_TF}:ours_inference", {"backbone": backbone}, None, None),
            ("ours_mixed", f"{SIDES_TF}:ours_inference",
             {"backbone": backbone, "precision": "mixed"}, None, None),
            *_litert_sides(backbone),
            *_plain_keras_sides("inference", backbone, log),
            torch_side("reference_inference"),
            torch_side("reference_inference", "reference_mixed", mixed=True),
        ], FLAGS.trials, seconds["inference"], log_dir, log)
        details["inference"] = results
        report(inference_rows(results, load, backbone, sides.INFERENCE_BATCH,
                              preset["torch_model"]))
    for benchmark in ("cnn14_train_step", "cnn14_inference"):
        if benchmark not in only:
            continue
        log(f"6 {benchmark}")
        training = benchmark == "cnn14_train_step"
        function = "train" if training else "inference"
        reference = ("reference", None, cnn14_torch_missing) if cnn14_torch_missing else (
            "reference", f"{SIDES_PANNS}:reference_{function}", {}, FLAGS.torch_python,
            torch_env)
        results, load = timed_benchmark(benchmark, [
            ("ours", f"{SIDES_PANNS}:ours_{function}", {}, None, None), reference,
        ], FLAGS.trials, seconds[benchmark], log_dir, log)
        details[benchmark] = results
        from benchmarks import panns_sides

        report(cnn14_rows(benchmark, results, load,
                          panns_sides.TRAIN_BATCH if training else panns_sides.INFERENCE_BATCH))
    if "memory" in only:
        from benchmarks import data

        log("5 memory")
        report(data.memory(FLAGS.work_dir))

    results = {"machine": common.machine(), "preset": FLAGS.preset, "trials": FLAGS.trials,
               "rows": rows, "sides": details}
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    with open(FLAGS.output, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(f"Measured on: {', '.join(f'{k} {v}' for k, v in results['machine'].items())}")
    print(common.format_table(rows))
    print(f"Wrote {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
