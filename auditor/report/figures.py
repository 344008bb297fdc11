"""The figures rules draw (auditor/report/drawing.py), loaded on first use.

Every rule imports this module, and `audit rules`, `audit explain` and `audit --help` import every rule:
matplotlib, about half a second to import, loads only when a report draws its first figure.
"""


def __getattr__(name: str):
    from . import drawing

    return getattr(drawing, name)
