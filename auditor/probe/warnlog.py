"""Torch's own warnings are evidence: a warning raised while the user's forward and loss run in the replay is
recorded with the step and the user's line that led to it, instead of scrolling past on stderr.

Python's "default" filter already shows a warning once per code location, so recording costs nothing on the
steps where nothing new is said; the frames are walked only when a warning is shown.
"""

from __future__ import annotations

import re
import sys
import sysconfig
import warnings
from pathlib import Path

import torch

_TORCH = str(Path(torch.__file__).resolve().parent)
_AUDITOR = str(Path(__file__).resolve().parents[1])
_SKIP = (_TORCH, _AUDITOR, str(Path(warnings.__file__).resolve()))
# Third-party libraries and the standard library: a warning whose nearest caller outside torch is one of them is
# that library's business (lightning's own FutureWarning about torch's pytree), not a line the user can change.
_LIBRARIES = tuple(str(Path(sysconfig.get_paths()[k]).resolve()) for k in ("purelib", "platlib", "stdlib"))
LIBRARY = "<library>"

# Warnings the audit's own instrumentation causes, not the user's code: torch.compile notices the probe's
# global forward hooks.
_OURS = (re.compile(r"global hooks on modules"),)


class WarningLog:
    """`with WarningLog() as log:` records every warning shown inside; `log.step` is the step they belong to."""

    def __init__(self, clock=None):
        self.step: int | None = 0  # None: in the experiments after the replay
        self._clock = clock  # () -> the step now, where a driver other than the replay keeps it (audit run)
        self.records: list[dict] = []
        self._keys: set = set()
        self._catch = None
        self._outside: set = set()

    def __enter__(self):
        # The frames that called the audit: a walk that reaches them has left the user's code behind.
        self._outside = set()
        frame = sys._getframe(1)
        while frame is not None:
            self._outside.add(frame)
            frame = frame.f_back
        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        # Once per location for what no filter decides, behind the user's own filters (a warning they silenced
        # stays silent); changing the filters also resets the once-per-location registries of earlier runs.
        warnings.simplefilter("default", append=True)
        warnings.showwarning = self._show
        return self

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
        return False

    def _show(self, message, category, filename, lineno, file=None, line=None):
        if issubclass(category, ResourceWarning):
            return  # raised by the garbage collector wherever it happens to run: no line of the user's to name
        text = str(message)
        if any(p.search(text) for p in _OURS):
            return
        where = _user_frame(self._outside) or _shorten(filename, lineno)
        if where == LIBRARY:
            return
        key = (category.__name__, text, where)
        if key in self._keys:
            return
        self._keys.add(key)
        self.records.append({"category": category.__name__, "message": text, "where": where,
                             "origin": None if str(Path(filename).resolve()).startswith(_AUDITOR)
                             else _shorten(filename, lineno),
                             "step": self._step()})

    def _step(self) -> int | None:
        step = self._clock() if self._clock is not None else self.step
        return None if step is None else int(step)


def _user_frame(outside: set) -> str | None:
    """The innermost frame outside torch, the auditor and the warnings module, and inside the audit: the
    user's line that called into what warned, or LIBRARY where that caller is a third-party or standard
    library. None when the auditor called torch directly (a loss object such as nn.MSELoss()): then torch's
    own line says where."""
    frame = sys._getframe(2)
    while frame is not None and frame not in outside:
        raw = frame.f_code.co_filename
        name = raw if raw.startswith("<") else str(Path(raw).resolve())
        if not name.startswith(_SKIP) and not name.startswith("<frozen"):
            return LIBRARY if name.startswith(_LIBRARIES) else f"{Path(name).name}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def _shorten(filename: str, lineno: int) -> str:
    path = Path(filename).resolve()
    try:
        return f"torch/{path.relative_to(_TORCH)}:{lineno}"
    except ValueError:
        return f"{path.name}:{lineno}"
