"""The figures rules draw (auditor/report/drawing.py), loaded on first use.

Every rule imports this module, and `audit rules`, `audit explain` and `audit --help` import every rule:
matplotlib, about half a second to import, loads only when a report draws its first figure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(eq=False)
class Job:
    """One figure to draw: `draw(ax)`, or `draw(axes)` over several panels side by side (drawing.render)."""

    draw: Callable
    width: float = 6.4
    height: float = 2.8
    panels: int = 1


def __getattr__(name: str):
    if name.startswith("__"):  # the import system's questions (__path__, ...): a module, not a package
        raise AttributeError(name)
    from . import drawing

    return getattr(drawing, name)
