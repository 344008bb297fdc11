"""One progress display over every phase of an audit (replay, experiments, fix verification, each report
format): the phase's name, how far it is and the time left, on stderr, drawn by tqdm. Silent when stderr is
not a terminal or with -q, so logs and CI output hold only results."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable


class Progress:
    """The silent display; also what the API gets by default."""

    def phase(self, name: str, total: int | None = None) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class Bar(Progress):
    def __init__(self, label: str):
        from tqdm import tqdm

        self.label = label
        # shutil falls back to 80x24 where a terminal reports a size of 0 (a fresh pty, some CI runners), which
        # tqdm would take literally and draw nothing.
        size = shutil.get_terminal_size()
        self._bar = tqdm(total=0, file=sys.stderr, leave=False, ncols=size.columns, nrows=size.lines, unit="",
                         bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {elapsed}<{remaining}")

    def phase(self, name: str, total: int | None = None) -> None:
        self._bar.reset(total=total or 0)
        self._bar.set_description_str(f"{self.label}: {name}")

    def update(self, n: int = 1) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


class _Steps(Progress):
    """A plain callable from older callers, given each replay step."""

    def __init__(self, fn: Callable[[int], None]):
        self.fn, self.current, self.done = fn, None, 0

    def phase(self, name, total=None):
        self.current, self.done = name, 0

    def update(self, n=1):
        if self.current == "replay":
            for _ in range(n):
                self.fn(self.done)
                self.done += 1


def as_progress(progress) -> Progress:
    if progress is None:
        return Progress()
    if isinstance(progress, Progress):
        return progress
    return _Steps(progress)


def for_terminal(label: str, quiet: bool) -> Progress:
    return Bar(label) if not quiet and sys.stderr.isatty() else Progress()
