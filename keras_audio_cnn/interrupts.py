"""Termination signals as exceptions, so that a stopped command leaves nothing half-written.

Python turns SIGINT (Ctrl-C) into `KeyboardInterrupt`, raised in the main thread,
so every `finally` and `with` runs on the way out: a temporary output is removed
(`rundir.publish`), a lock released (`rundir.RunLock`), a preparation's folders
removed (`tfds_builders.preparation`). A job scheduler's SIGTERM and a closed
terminal's SIGHUP would instead end the process at once, leaving those behind.
`handled()` makes the three alike: each raises `Interrupted`, a `KeyboardInterrupt`
that knows its signal (`cli.run_or_exit` turns it into one line and the exit
status 128 + its number: 130, 143, 129).

A few steps must not be cut in two (replacing an output by its new version, an
epoch's backup): inside `deferred()` a signal waits, and is raised as soon as the
step is done.
"""

import contextlib
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A termination signal, raised in the main thread where the program was."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = int(signum)

    @property
    def name(self):
        return signal.Signals(self.signum).name

    @property
    def exit_status(self):
        """The shell's convention: 128 + the signal's number."""
        return 128 + self.signum


_deferring = []  # one entry per `deferred()` block being run
_pending = []  # the signal that came during one


def _on_signal(signum, frame):
    del frame
    if _deferring:
        if not _pending:
            _pending.append(signum)
        return
    # One exception per process: a second signal (Ctrl-C pressed again) must not cut
    # short the cleanup the first one started.
    for other in SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    raise Interrupted(signum)


@contextlib.contextmanager
def handled():
    """Within: SIGINT, SIGTERM and SIGHUP raise `Interrupted` (in the main thread; in
    another thread this changes nothing). The handlers before are restored on leaving."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, _on_signal)
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def deferred():
    """Within: a signal of `handled()` waits until the block is done, then is raised."""
    _deferring.append(True)
    try:
        yield
    finally:
        _deferring.pop()
        if not _deferring and _pending:
            _on_signal(_pending.pop(), None)
