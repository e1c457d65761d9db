"""Timing, memory and machine facts shared by the benchmarks."""

import datetime
import os
import platform
import subprocess
import sys
import time


def throughput(fn, items, *, warmup=1, min_seconds=10.0, min_calls=3):
    """Items per second of `fn()` after `warmup` calls (which trace and allocate).

    Repeats the call until at least `min_seconds` and `min_calls` have passed,
    so short calls are averaged over many repetitions.
    """
    for _ in range(warmup):
        fn()
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < min_seconds:
        fn()
        calls += 1
    return items * calls / (time.perf_counter() - start)


def peak_rss_mb(command, **kwargs):
    """Runs `command` to completion; returns (its own peak RSS in MB, its CompletedProcess).

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


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine():
    """What the numbers were measured on."""
    import keras
    import librosa
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu_model(),
        "cpu_cores": len(os.sched_getaffinity(0)),
        "gpus": gpus or "none",
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "librosa": librosa.__version__,
        "command": " ".join([os.path.basename(sys.executable), "-m", "benchmarks", *sys.argv[1:]]),
    }


def row(benchmark, what, ours, baseline, unit, *, ratio=None, target="", met=None, note=""):
    """One line of the results table: the project's figure beside its baseline's.

    `ratio` is the figure the target is stated in (a speed-up, a size ratio...);
    `met` says whether the target was reached (None: no target).
    """
    return {"benchmark": benchmark, "what": what, "ours": ours, "baseline": baseline,
            "unit": unit, "ratio": ratio, "target": target, "met": met, "note": note}


def format_table(rows):
    lines = ["| benchmark | what | ours | baseline | ratio | target | met | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def fmt(value):
            if value is None:
                return "-"
            return f"{value:,.4g} {r['unit']}" if isinstance(value, float) else f"{value} {r['unit']}"
        ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else "-"
        met = {None: "-", True: "yes", False: "**no**"}[r["met"]]
        lines.append(f"| {r['benchmark']} | {r['what']} | {fmt(r['ours'])} | {fmt(r['baseline'])} "
                     f"| {ratio} | {r['target'] or '-'} | {met} | {r['note']} |")
    return "\n".join(lines) + "\n"
