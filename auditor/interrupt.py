"""A report that is never lost: Ctrl-C, SIGTERM (a CI job's timeout) and `--timeout` stop the audit where it
is, and what was measured until then still becomes a report, marked partial in every format.

`Stopped` derives from BaseException, as KeyboardInterrupt does, so that a user's `except Exception` around a
batch cannot swallow it. Only the command line installs the handlers; the Python API keeps Python's own
Ctrl-C behaviour.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

# What the audit is doing now, for the message of a timeout: "reading a batch from the loader in loader.py".
_doing = ["starting"]
# Under torchrun a rank must not leave the replay alone: the others would wait for it in a collective. There a
# signal is recorded here and the ranks agree to stop at their next meeting point (auditor/probe/run.py).
_deferred = {"on": False, "pending": None}


class Stopped(BaseException):
    def __init__(self, reason: str, exit_code: int):
        super().__init__(reason)
        self.reason, self.exit_code = reason, exit_code


def doing(what: str) -> None:
    _doing[0] = what


def now() -> str:
    return _doing[0]


def pending() -> tuple[str, int] | None:
    """(reason, exit code) of a signal that came while signals were held for the ranks to agree on."""
    return _deferred["pending"]


def undefer() -> None:
    """From now on a signal stops this process at once (rank 0, alone after the replay); one that came while
    signals were held does so now."""
    _deferred["on"] = False
    if _deferred["pending"] is not None:
        raise Stopped(*_deferred["pending"])


@contextmanager
def handled(timeout: float | None = None, hold: bool = False):
    """SIGINT -> exit 130, SIGTERM -> exit 143 (128 + signal number, as shells report them), and SIGALRM after
    `timeout` seconds -> exit 2 with what the audit was doing. `hold` (under torchrun): record the signal for
    the ranks to act on together instead of raising where it lands."""

    def stop(signum, _frame):
        if signum == signal.SIGALRM:
            why = (f"stopped by --timeout {timeout:g} s while {now()}", 2)
        else:
            name = "Ctrl-C (SIGINT)" if signum == signal.SIGINT else "SIGTERM"
            why = (f"stopped by {name} while {now()}", 128 + signum)
        if _deferred["on"]:
            _deferred["pending"] = _deferred["pending"] or why
            return
        raise Stopped(*why)

    _deferred.update(on=hold, pending=None)

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    if timeout:
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _deferred.update(on=False)
        for s, handler in old.items():
            signal.signal(s, handler)


@contextmanager
def deferred():
    """While the reports are written, a signal waits until they are complete, then stops the audit."""
    pending = []

    def remember(signum, _frame):
        pending.append(signum)

    old = {s: signal.signal(s, remember) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    try:
        yield pending
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


@contextmanager
def shielded():
    """A block no signal may cut in half (restoring the caller's model): a signal that comes meanwhile is
    delivered again, to whatever handler was in place, once the block is done."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are only ever delivered to the main thread
        return
    with deferred() as pending:
        yield
    for signum in dict.fromkeys(pending):
        signal.raise_signal(signum)
