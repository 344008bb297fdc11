"""Errors the user can act on. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations

import re
import sys
import sysconfig
import traceback
from pathlib import Path

_AUDITOR_DIR = str(Path(__file__).resolve().parent)
# Frames from these trees are library internals; a user wants to see their own code.
_LIBRARY_DIRS = tuple(
    str(Path(p).resolve())
    for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
)


class AuditError(Exception):
    """Bad input: a missing file, a model.py without a model, a batch of the wrong shape, ...

    `str(error)` is the one-line message; `detail` holds optional extra lines (the user's frames).
    """

    def __init__(self, message: str, detail: list[str] | None = None):
        super().__init__(message)
        self.detail = detail or []


class NeverStepped(AuditError):
    """A script that crashed, exited or ran out before its first optimizer step: nothing was observed."""


def _is_user_frame(filename: str) -> bool:
    if filename.startswith("<"):
        return False
    path = str(Path(filename).resolve())
    return not path.startswith(_AUDITOR_DIR) and not path.startswith(_LIBRARY_DIRS)


def user_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    return [f for f in traceback.extract_tb(exc.__traceback__) if _is_user_frame(f.filename)]


def from_user_exception(exc: BaseException, what: str) -> AuditError:
    """Turn an exception raised inside the user's code into a one-line error that points at their code."""
    if _is_oom(exc):
        return out_of_memory(exc, what)
    frames = user_frames(exc)
    kind = type(exc).__name__
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    where = ""
    if frames:
        last = frames[-1]
        where = f"{last.filename}:{last.lineno} in {last.name}: "
    detail = [f'  File "{f.filename}", line {f.lineno}, in {f.name}' + (f"\n    {f.line}" if f.line else "")
              for f in frames]
    return AuditError(f"{where}{kind} while {what}: {message}".rstrip(": "), detail)


def print_error(error: AuditError, file=None) -> None:
    file = file or sys.stderr
    print(f"audit: error: {error}", file=file)
    if error.detail:
        print("Your code (most recent call last):", file=file)
        for line in error.detail:
            print(line, file=file)


def _is_oom(exc: BaseException) -> bool:
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(exc, oom)


_ASKED = re.compile(r"Tried to allocate ([\d.]+ [KMGT]i?B)")


def out_of_memory(exc: BaseException, what: str) -> AuditError:
    """A CUDA out-of-memory as one line: the phase, the memory asked for and free, and what to change. The
    memory the failed attempt held is given back first, so the process (a notebook, a trainer) can go on."""
    import gc

    import torch

    text = str(exc)
    asked = _ASKED.search(text)
    free = ""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
        free_b, total_b = torch.cuda.mem_get_info()
        free = f", {free_b / 2**30:.2f} GiB of {total_b / 2**30:.2f} GiB free now"
    want = f" asking for {asked.group(1)}" if asked else ""
    return AuditError(f"out of device memory while {what}{want}{free}: run with --in-place (the probe then trains "
                      "your model itself, restored afterwards, instead of a copy beside it), use a smaller batch in "
                      "the loader, or run it with --device cpu")
