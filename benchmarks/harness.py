"""Sides in their own processes, timed in interleaved trials.

A side is a function `setup(**options) -> Side` in a module of this package
(`benchmarks.sides` for TensorFlow, `benchmarks.torch_sides` for PyTorch). The
harness starts each side as `python -m benchmarks.harness MODULE:FUNCTION JSON`,
which sets it up and warms it (tracing, allocation: untimed), then answers one
command a line on stdin:

    {"trial": seconds}  -> {"items": n, "seconds": t, "calls": c}
    {"finish": true}    -> {"extras": {...}} and exits

Protocol lines on stdout start with `PREFIX`; anything else a library prints is
ignored, and stderr goes to a log file. `interleave` runs the sides' trials in
turn (A B C A B C ...), so a change of machine load reaches every side alike.
"""

import dataclasses
import importlib
import json
import os
import subprocess
import sys
import time

PREFIX = "BENCH "
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class Side:
    """A set-up, warmed side: `call()` processes `items` items (clips, samples).

    `info` describes it (settings, devices, accuracy checks) and is sent when it
    is ready; `finish()` may return extra measurements taken after the trials.
    """

    call: callable
    items: int
    info: dict = dataclasses.field(default_factory=dict)
    finish: callable = None


def run_trial(side, seconds, min_calls=1):
    """Calls `side.call()` until `seconds` and `min_calls` have passed."""
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < seconds:
        side.call()
        calls += 1
    elapsed = time.perf_counter() - start
    return {"items": side.items * calls, "seconds": elapsed, "calls": calls}


def _send(message):
    sys.stdout.write(PREFIX + json.dumps(message) + "\n")
    sys.stdout.flush()


def serve(target, options):
    """The side process: set up `target` ("module:function"), then answer commands."""
    module, function = target.split(":")
    side = getattr(importlib.import_module(module), function)(**options)
    side.call()  # trace, allocate
    side.call()
    _send({"ready": True, "info": side.info})
    for line in sys.stdin:
        command = json.loads(line)
        if "trial" in command:
            _send(run_trial(side, command["trial"]))
        elif "finish" in command:
            _send({"extras": side.finish() if side.finish else {}})
            return


class SideFailed(RuntimeError):
    pass


class Worker:
    """The harness's handle on one side's process."""

    def __init__(self, name, target, options=None, *, python=None, env=None, log_dir=None):
        self.name = name
        self.info = {}
        self.setup_seconds = None
        self.log_path = os.path.join(log_dir or ".", f"{name}.log")
        command = [python or sys.executable, "-m", "benchmarks.harness", target,
                   json.dumps(options or {})]
        self._log = open(self.log_path, "w")
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            text=True, cwd=ROOT, env=env)

    def _receive(self):
        for line in self._process.stdout:
            if line.startswith(PREFIX):
                return json.loads(line[len(PREFIX):])
        self._process.wait()
        self._log.close()
        with open(self.log_path) as f:
            tail = f.read()[-3000:]
        raise SideFailed(f"side {self.name} exited with {self._process.returncode} "
                         f"(log: {self.log_path}):\n{tail}")

    def _command(self, message):
        self._process.stdin.write(json.dumps(message) + "\n")
        self._process.stdin.flush()
        return self._receive()

    def wait_ready(self):
        start = time.perf_counter()
        self.info = self._receive()["info"]
        self.setup_seconds = time.perf_counter() - start
        return self

    def trial(self, seconds):
        return self._command({"trial": seconds})

    def finish(self):
        try:
            return self._command({"finish": True})["extras"]
        finally:
            self.close()

    def close(self):
        if self._process.poll() is None:
            try:
                self._process.stdin.close()
            except OSError:
                pass
            try:
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()


def interleave(workers, trials, seconds, log=print):
    """`trials` rounds of one trial per worker, in turn; {name: [trial dicts]}."""
    results = {worker.name: [] for worker in workers}
    for round_number in range(trials):
        for worker in workers:
            result = worker.trial(seconds)
            results[worker.name].append(result)
            log(f"  trial {round_number + 1}/{trials} {worker.name}: "
                f"{result['items'] / result['seconds']:.4g} items/s over "
                f"{result['seconds']:.1f} s ({result['calls']} calls)")
    return results


def rates(trials):
    return [t["items"] / t["seconds"] for t in trials]


if __name__ == "__main__":
    serve(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
