"""Statistics, machine facts, rows and the table shared by the benchmarks.

Nothing here imports TensorFlow at module level: the harness process stays light
and every timed side runs in its own process (`benchmarks.harness`).
"""

import datetime
import os
import platform
import statistics
import subprocess
import sys

# A side whose trials spread more than this fraction of their median is flagged.
MAX_SPREAD = 0.20


def summarize(rates):
    """Median, min, max and spread of one side's per-trial rates.

    `spread` is `(max - min) / median`; `unstable` says it is over `MAX_SPREAD`.
    """
    if not rates:
        raise ValueError("no trials to summarize")
    median = statistics.median(rates)
    low, high = min(rates), max(rates)
    spread = (high - low) / median if median else float("inf")
    return {"median": median, "min": low, "max": high, "trials": len(rates),
            "spread": spread, "unstable": spread > MAX_SPREAD}


def load_average():
    """The 1, 5 and 15 minute load averages, rounded (None where the OS has none)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def peak_rss_mb(command, **kwargs):
    """Runs `command` to completion; returns (its own peak RSS in MB, its output).

    `os.wait4` reports the resource usage of that one child, not of every child
    this process ever had.
    """
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, **kwargs)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return usage.ru_maxrss / 1024, output  # ru_maxrss is in KiB on Linux


def directory_bytes(path):
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


def probe(python, code, env=None):
    """The last line `python -c code` prints, or None if it fails."""
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env)
    lines = result.stdout.strip().splitlines()
    return lines[-1] if result.returncode == 0 and lines else None


def torch_notes(python, need_cuda, modules=("torchvision",), install=".[bench]"):
    """Why the PyTorch sides cannot run under `python`, as `(all sides, sides on the
    GPU)`: None where they can. With `need_cuda` (TensorFlow sees a GPU) a torch that
    sees no CUDA GPU would time the reference on the CPU against the project on the
    GPU, so its network sides are not measured (its per-clip frontend runs on the
    CPU anyway, as in the paper's preprocessing). `modules`: what the sides import
    besides torch (the paper's torchvision; PANNs' torchlibrosa and panns_inference,
    looked up without importing it: its package downloads a file at import)."""
    found = probe(python, "import importlib.util, torch; "
                  f"assert all(importlib.util.find_spec(m) for m in {list(modules)!r}); "
                  "print(torch.__version__, torch.cuda.is_available())")
    if not found:
        return (f"not measured: torch and {', '.join(modules)} do not import in {python} "
                f"(pip install -e \"{install}\", or --torch_python=PATH)"), None
    version, cuda = found.rsplit(" ", 1)
    if need_cuda and cuda != "True":
        return None, (f"not measured: torch {version} in {python} sees no CUDA GPU, so the "
                      "reference would run on the CPU (install a CUDA build of torch there)")
    return None, None


def tensorflow_gpus(python=sys.executable):
    """How many GPUs TensorFlow sees under `python` (None if it does not import)."""
    found = probe(python, "import tensorflow as tf; "
                  "print(len(tf.config.list_physical_devices('GPU')))")
    return None if found is None else int(found)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features():
    """The vector-instruction flags that decide TensorFlow's and the project's CPU defaults."""
    from keras_audio_cnn import devices  # no TensorFlow at import time of this function

    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
    flags = devices.cpu_flags()
    return [flag for flag in wanted if flag in flags]


def machine():
    """What the numbers were measured on (versions of the harness's interpreter)."""
    import keras
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu_model(),
        "cpu_flags": " ".join(cpu_features()) or "none of avx2/avx512",
        "cpu_cores": len(os.sched_getaffinity(0)),
        "gpus": gpus or "none",
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "command": " ".join([os.path.basename(sys.executable), "-m", "benchmarks", *sys.argv[1:]]),
    }


def row(benchmark, side, what, unit, *, stats=None, value=None, reference=None, ratio=None,
        target="", met=None, note="", trial_seconds=None, load=None):
    """One line of the results table: one side of a benchmark.

    `stats` is `summarize`'s dict for timed sides; `value` a single figure (a size).
    `ratio` is the figure the target is stated in, against `reference` (the side
    named); `met` says whether the target was reached (None: no target, or not
    measured). `load` is `(before, after)` load averages of the benchmark.
    """
    return {"benchmark": benchmark, "side": side, "what": what, "unit": unit,
            "stats": stats, "value": value, "reference": reference, "ratio": ratio,
            "target": target, "met": met, "note": note, "trial_seconds": trial_seconds,
            "load": load}


def _number(value):
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def format_table(rows):
    lines = ["| benchmark | side | median | min - max | trials x s | ratio | target | met "
             "| load before / after | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        stats = r["stats"]
        if stats:
            median = f"{_number(stats['median'])} {r['unit']}"
            spread = f"{_number(stats['min'])} - {_number(stats['max'])}"
            if stats["unstable"]:
                spread += f" (**spread {100 * stats['spread']:.0f}% > {100 * MAX_SPREAD:.0f}%**)"
            trials = f"{stats['trials']} x {r['trial_seconds']:.1f}" if r["trial_seconds"] else (
                str(stats["trials"]))
        else:
            median = f"{_number(r['value'])} {r['unit']}" if r["value"] is not None else (
                "not measured")
            spread, trials = "-", "-"
        ratio = "-"
        if r["ratio"] is not None:
            ratio = f"{r['ratio']:.2f}x" + (f" {r['reference']}" if r["reference"] else "")
        met = {None: "-", True: "yes", False: "**no**"}[r["met"]]
        load = "-"
        if r["load"] and r["load"][0] and r["load"][1]:
            load = f"{r['load'][0][0]:.2f} / {r['load'][1][0]:.2f}"
        lines.append(f"| {r['benchmark']} | {r['side']}: {r['what']} | {median} | {spread} "
                     f"| {trials} | {ratio} | {r['target'] or '-'} | {met} | {load} "
                     f"| {r['note']} |")
    return "\n".join(lines) + "\n"
