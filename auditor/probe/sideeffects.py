"""What a script's first run did beyond training, that re-running it would do again: files it wrote (a log, a
checkpoint, a results table it appends to) and reads of stdin (which a re-run, started with no terminal,
cannot replay). The auditor re-runs a script to prove its fixes and to run the LR range test; where the first
run showed either, it does not, unless the user allows it (`audit run --rerun-writes`), and the report says so.

Seen through `open` (builtins and io, which pathlib, numpy and torch.save use) and a stand-in for sys.stdin:
files written under the temporary folder and the null device are not side effects anyone needs to confirm.
"""

from __future__ import annotations

import builtins
import io
import os
import sys
import tempfile
from pathlib import Path

_WRITE_MODES = set("wax+")


class SideEffects:
    def __init__(self):
        self.written: list[str] = []  # paths, in the order first written
        self.stdin = False
        self._saved: list = []
        self._temp = str(Path(tempfile.gettempdir()).resolve())

    def __enter__(self):
        original = builtins.open
        seen = self

        def open_(file, mode="r", *args, **kwargs):
            if isinstance(mode, str) and _WRITE_MODES & set(mode) and isinstance(file, str | bytes | os.PathLike):
                seen._wrote(file)
            return original(file, mode, *args, **kwargs)
        self._saved = [(builtins, "open", builtins.open), (io, "open", io.open), (sys, "stdin", sys.stdin)]
        builtins.open = io.open = open_
        sys.stdin = _Stdin(sys.stdin, self)
        return self

    def __exit__(self, *exc):
        for owner, name, value in reversed(self._saved):
            setattr(owner, name, value)
        self._saved.clear()
        return False

    def _wrote(self, file) -> None:
        path = os.path.realpath(os.fsdecode(file))
        if path == os.devnull or path.startswith(self._temp + os.sep):
            return
        if path not in self.written:
            self.written.append(path)

    def why_not_rerun(self) -> str | None:
        """The reason re-running the script needs the user's word, or None."""
        if self.stdin:
            return "the script read stdin in its first run, which a re-run cannot replay"
        if self.written:
            cwd = os.getcwd()
            names = [os.path.relpath(p, cwd) if p.startswith(cwd + os.sep) else p for p in self.written]
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            return (f"the script wrote {shown} in its first run, and a re-run would write again; "
                    "pass --rerun-writes to allow it")
        return None


class _Stdin:
    """sys.stdin as the script had it, noting any read (input() reads through readline)."""

    def __init__(self, real, seen: SideEffects):
        self._real, self._seen = real, seen

    def _read(self, name):
        self._seen.stdin = True
        return getattr(self._real, name)

    def read(self, *a):
        return self._read("read")(*a)

    def readline(self, *a):
        return self._read("readline")(*a)

    def readlines(self, *a):
        return self._read("readlines")(*a)

    def __iter__(self):
        self._seen.stdin = True
        return iter(self._real)

    def __getattr__(self, name):
        if name == "buffer":
            self._seen.stdin = True
        return getattr(self._real, name)
