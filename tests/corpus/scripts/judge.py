"""What counts as right on a script case: shared by the test subset and bench/script_corpus.py."""

from __future__ import annotations


def judge(case, report: dict) -> list[str]:
    """Problems with a report (report.json as a dict) against the case's labels; empty when it is right."""
    loud = [f["rule"] for f in report["findings"] if f["severity"] != "info"]
    if case.healthy:
        return [f"false alarm: {', '.join(loud)}"] if loud else []
    wrong = [f"missed {r}" for r in sorted(case.fires - set(loud))]
    roots = report.get("root_causes") or []
    if case.headline and (not roots or roots[0] != case.headline):
        wrong.append(f"headline {roots[0] if roots else None}, expected {case.headline}")
    return wrong
