"""`--tensorboard DIR`: the probe's series as TensorBoard event files (torch.utils.tensorboard), so they sit
beside every other run a user looks at. Steps are the probe's steps; NaN (a step without a measurement) is
left out rather than drawn as a gap-filling zero."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import AuditError


def write(report, folder: str | Path) -> Path:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise AuditError("--tensorboard needs the tensorboard package: pip install "
                         "'training-run-auditor[tensorboard]'") from None
    ev = report.evidence
    folder = Path(folder)
    with SummaryWriter(log_dir=str(folder)) as w:
        _series(w, "probe/loss", ev.loss)
        _series(w, "probe/grad_norm", ev.grad_norm)
        for p in ev.params:
            _series(w, f"update_to_data/{p.name}", np.log10(_positive(p.update_data_ratio)))
            _series(w, f"grad_to_data/{p.name}", np.log10(_positive(p.grad_data_ratio)))
        for a in ev.activations:
            _series(w, f"activation_saturated/{a.name}", a.saturated)
            _series(w, f"activation_dead/{a.name}", a.dead)
            for step, values in sorted(a.histograms.items()):
                _histogram(w, f"activations/{a.name}", values, step)
            for step, values in sorted(a.grad_histograms.items()):
                _histogram(w, f"activation_grads/{a.name}", values, step)
        w.add_text("audit/verdict", f"{report.verdict}: " + ", ".join(f"{f.rule} ({f.severity})"
                                                                       for f in report.findings), 0)
    return folder


def _positive(values) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return np.where(v > 0, v, np.nan)


def _series(w, tag: str, values) -> None:
    for step, value in enumerate(np.asarray(values, dtype=float)):
        if np.isfinite(value):
            w.add_scalar(tag, float(value), step)


def _histogram(w, tag: str, values, step: int) -> None:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size:
        w.add_histogram(tag, v, step)
