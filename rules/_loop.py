"""Shared reading of a script's loop evidence (auditor/probe/script.py) for the loop rules."""

from __future__ import annotations


def forwards(ev, *, model: bool = True) -> list[dict]:
    return [f for f in (ev.loop or {}).get("forwards", []) if f["model"] == model]


def steps_with(fwds: list[dict], test) -> set[int]:
    return {f["step"] for f in fwds if test(f)}
