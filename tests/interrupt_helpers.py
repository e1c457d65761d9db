"""A command that stops at one moment of its writing and waits there for a signal, for
tests/test_signals.py:

    python -m tests.interrupt_helpers READY_FD WHERE script.py --flag=value ...

WHERE is `publish:<name>`: once `rundir.publish` has written the temporary of the output
`name` (model.keras, saved_model, out.csv, report.md...), before it is renamed into
place; or `after:<module>:<Class.method>`: once that function has returned (e.g. an
epoch's backup, a CSV's header line). There the command writes a byte to the file
descriptor READY_FD, the test's pipe, and waits in Python code, where a signal's
handler runs.
"""

import functools
import importlib
import os
import runpy
import sys
import time


def _stop_here(ready_fd):
    os.write(ready_fd, b"!")
    os.close(ready_fd)
    while True:  # not a synchronisation: the test waits on the pipe; this only waits
        time.sleep(0.05)  # in Python, whichever thread the kernel gives the signal to


def _stop_in_publish(name, ready_fd):
    from keras_audio_cnn import rundir

    publish = rundir.publish

    def stopping(run_dir, output, write):
        if output != name:
            return publish(run_dir, output, write)

        def write_then_stop(path):
            write(path)
            _stop_here(ready_fd)

        return publish(run_dir, output, write_then_stop)

    rundir.publish = stopping  # also what rundir's own write_text calls


def _stop_after(target, ready_fd):
    module_name, _, attribute = target.partition(":")
    owner_name, _, name = attribute.rpartition(".")
    owner = importlib.import_module(module_name)
    for part in filter(None, owner_name.split(".")):
        owner = getattr(owner, part)
    original = getattr(owner, name)

    @functools.wraps(original)
    def stopping(*args, **kwargs):
        result = original(*args, **kwargs)
        _stop_here(ready_fd)
        return result

    setattr(owner, name, stopping)


def main():
    ready_fd, where, script, *flags = sys.argv[1:]
    kind, _, target = where.partition(":")
    {"publish": _stop_in_publish, "after": _stop_after}[kind](target, int(ready_fd))
    sys.argv = [script, *flags]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
