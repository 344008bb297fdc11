"""What counts as right on a script case: shared by the test subset and bench/script_corpus.py."""

from __future__ import annotations


def judge(case, reports: dict | list[dict]) -> list[str]:
    """Problems with a script's reports (report.json as dicts, one per optimizer the script steps) against the
    case's labels; empty when they are right. A bug is headlined by the report of the optimizer it is in."""
    reports = [reports] if isinstance(reports, dict) else reports
    loud = [f["rule"] for r in reports for f in r["findings"] if f["severity"] != "info"]
    if case.healthy:
        return [f"false alarm: {', '.join(loud)}"] if loud else []
    wrong = [f"missed {r}" for r in sorted(case.fires - set(loud))]
    heads = [(r.get("root_causes") or [None])[0] for r in reports]
    if case.headline and case.headline not in heads:
        wrong.append(f"headline {' / '.join(str(h) for h in heads)}, expected {case.headline}")
    return wrong
