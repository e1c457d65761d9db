"""A side for tests/test_benchmarks.py, in a module that imports no TensorFlow (fast to start)."""

import itertools

from benchmarks import harness

_counter = itertools.count()


def tiny_side(items=3, fail=False):
    """Each call counts `items` items; `finish` reports how many calls this process made."""
    if fail:
        raise RuntimeError("this side cannot be set up")
    return harness.Side(lambda: next(_counter), items, {"items": items},
                        finish=lambda: {"calls_seen": next(_counter)})
