"""What the trainer callbacks share: audit a setup, write the reports, and stop the fit when `fail_on` is met."""

from __future__ import annotations

import warnings
from pathlib import Path

from ..api import audit_setup
from ..config import FAIL_ON
from ..errors import AuditError

__all__ = ["AuditError", "AuditFailed"]
from ..load import UserSetup
from ..report import Report

# The keywords of auditor.audit() that a callback passes on unchanged.
AUDIT_KEYWORDS = ("steps", "stats_every", "seed", "device", "ignore", "thresholds", "verify_fixes", "plugins",
                  "clip_grad_norm")


class AuditFailed(RuntimeError):
    """Raised by a callback to stop a fit: the message names the failing rules and where the report is."""


def check_options(fail_on: str, options: dict) -> None:
    if fail_on not in FAIL_ON:
        raise ValueError(f"fail_on must be one of {', '.join(FAIL_ON)}, not {fail_on!r}")
    unknown = set(options) - set(AUDIT_KEYWORDS)
    if unknown:
        raise TypeError(f"unknown keyword(s) {', '.join(sorted(unknown))}; AuditCallback takes fail_on, out, "
                        f"formats and those of auditor.audit(): {', '.join(AUDIT_KEYWORDS)}")


def run(setup: UserSetup, optimizer, scheduler, out: Path, formats, options: dict) -> tuple[Report, list[Path]]:
    with warnings.catch_warnings():
        # A LightningModule's self.log() on the probe's copy, which no trainer is attached to, warns each step.
        warnings.filterwarnings("ignore", message=r".*self\.log\(\)")
        report = audit_setup(setup, optimizer=optimizer, scheduler=scheduler, **options)
    return report, report.write(out, formats)


def key_metrics(report: Report) -> dict[str, float]:
    """A few numbers for the trainer's logger, so the verdict sits beside the run's own curves."""
    c = report.counts
    out = {"audit/errors": float(c["error"]), "audit/warnings": float(c["warning"]), "audit/info": float(c["info"]),
           "audit/probe_seconds": float(report.probe.seconds)}
    if report.probe.initial_loss is not None:
        out["audit/initial_loss"] = float(report.probe.initial_loss)
    if report.probe.expected_initial_loss is not None:
        out["audit/expected_initial_loss"] = float(report.probe.expected_initial_loss)
    finite = [float(x) for x in report.evidence.loss if x == x]
    if finite:
        out["audit/final_probe_loss"] = finite[-1]
    return {k: v for k, v in out.items() if v == v}


def failure(report: Report, fail_on: str, written: list[Path]) -> str | None:
    """The message a stopped fit raises with, or None when the audit passes."""
    if report.passed(fail_on):
        return None
    from ..engine import SEVERITY_RANK

    bad = [f for f in report.findings if SEVERITY_RANK[f.severity] >= SEVERITY_RANK[fail_on]]
    names = ", ".join(dict.fromkeys(f"{f.rule} ({f.severity})" for f in bad))
    where = written[0].parent if written else "(no report written)"
    return (f"training-run audit failed (fail_on={fail_on!r}): {names}. The fit was stopped before its first step; "
            f"report in {where}. Pass fail_on='never' to record the audit and train anyway.")


def guard(fn):
    """An AuditError (bad input) from the probe becomes AuditFailed with its one-line message."""
    try:
        return fn()
    except AuditError as exc:
        raise AuditFailed(f"training-run audit could not run: {exc}") from None
