"""Step 5 of the data flow: the report object and its writers (JSON, Markdown, HTML, PDF)."""

from __future__ import annotations

import importlib.resources
import json
import platform
from dataclasses import asdict
from pathlib import Path

import jinja2

from ..engine import SEVERITIES, SEVERITY_RANK, Finding, _plain
from ..evidence import Evidence, nanmedian
from . import markdown

SCHEMA_VERSION = 1


def _metrics(ev: Evidence) -> dict:
    window = ev.window()
    params = {}
    for p in ev.params:
        params[p.name] = {
            "shape": list(p.shape), "role": p.role, "module": p.module_type,
            "zero_at_init": p.zero_at_init, "received_grad": p.received_grad,
            "grad_norm": nanmedian(p.grad_norm[window]),
            "grad_data_ratio": nanmedian(p.grad_data_ratio[window]),
            "update_data_ratio": nanmedian(p.update_data_ratio[window]),
        }
    acts = {}
    for a in ev.activations:
        acts[a.name] = {
            "kind": a.kind, "units": a.units, "mean": nanmedian(a.mean), "std": nanmedian(a.std),
            "saturated": nanmedian(a.saturated), "dead": nanmedian(a.dead), "grad_std": nanmedian(a.grad_std),
        }
    return {"loss": ev.loss, "grad_norm": ev.grad_norm, "initial_losses": ev.initial_losses,
            "parameters": params, "activations": acts}


def _environment(device: str) -> dict:
    import torch

    return {"torch": torch.__version__, "python": platform.python_version(),
            "platform": f"{platform.system()}-{platform.machine()}", "device": device,
            "device_name": _device_name(device)}


def _device_name(device: str) -> str | None:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return None


class Report:
    """What `auditor.audit()` returns: findings, probe facts and metrics, with writers for each format."""

    def __init__(self, findings: list[Finding], evidence: Evidence, version: str, rules: list[str]):
        self.skipped: list[str] = []
        self.verify_seconds: float | None = None  # None: fixes were not verified
        self.findings = findings
        self.root_causes: list[str] = []  # rule ids, headline first (auditor/causes.py)
        self.evidence = evidence
        self.probe = evidence.probe
        self.version = version
        self.rules = rules
        # What the audit was asked to do, so that two reports compared by `audit diff` can be told apart fairly.
        self.settings: dict = {}
        self.catalogue: dict | None = None  # the rules run, plugins included (for their figures)
        self._html: str | None = None  # to_html(), once drawn

    def order_by_cause(self) -> None:
        """Each root cause, then what it explains, in the order of `root_causes`."""
        from ..causes import consequences

        ordered = []
        for root in self.root_causes:
            for f in [g for g in self.findings if g.rule == root] + consequences(self.findings, root):
                if f not in ordered:
                    ordered.append(f)
        self.findings = ordered + [f for f in self.findings if f not in ordered]

    def causes(self) -> list[tuple[Finding, list[Finding]]]:
        """(root finding, the findings it explains) for each root cause, headline first."""
        from ..causes import consequences

        return [(next(f for f in self.findings if f.rule == root), consequences(self.findings, root))
                for root in self.root_causes]

    @property
    def causes_title(self) -> str:
        """The heading over the root causes: where every one is information, nothing went wrong."""
        return "What went wrong" if self.counts["error"] + self.counts["warning"] else \
            "Nothing went wrong; worth knowing"

    @property
    def partial(self) -> bool:
        """True when the audit was stopped early: the findings are judged on what was measured until then."""
        return bool(self.probe.partial_reason)

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES}

    @property
    def verdict(self) -> str:
        c = self.counts
        return "errors" if c["error"] else "warnings" if c["warning"] else "clean"

    def passed(self, fail_on: str = "error") -> bool:
        """False when a finding reaches `fail_on` ('error', 'warning'); 'never' always passes."""
        if fail_on == "never":
            return True
        if fail_on not in SEVERITY_RANK:
            raise ValueError(f"fail_on must be 'error', 'warning' or 'never', not {fail_on!r}")
        return not any(SEVERITY_RANK[f.severity] >= SEVERITY_RANK[fail_on] for f in self.findings)

    def to_dict(self) -> dict:
        return _plain({
            "schema_version": SCHEMA_VERSION,
            "auditor_version": self.version,
            "verdict": self.verdict,
            "partial": self.partial,
            "partial_reason": self.probe.partial_reason,
            "counts": self.counts,
            "root_causes": self.root_causes,
            "findings": [f.to_dict() for f in self.findings],
            "probe": asdict(self.probe),
            "rules_run": self.rules,
            "verify_seconds": self.verify_seconds,
            "settings": self.settings,
            "environment": _environment(self.probe.device),
            "metrics": _metrics(self.evidence),
        })

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        return path

    def to_markdown(self) -> str:
        # templates/ ships as the package auditor.templates: found the same way in regular and editable installs
        folder = str(importlib.resources.files("auditor.templates"))
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(folder), autoescape=False,
                                 trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
        env.filters["md"] = markdown.text
        env.filters["c"] = markdown.code
        env.filters["fence"] = markdown.fence
        from ..verify import MOOT, OUTCOMES

        return env.get_template("report.md.j2").render(report=self, probe=self.probe, counts=self.counts,
                                                       outcome_words=OUTCOMES, moot_words=MOOT)

    def write_markdown(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_markdown())
        return path

    def to_html(self) -> str:
        """The HTML report, figures inlined. Drawn once: the HTML file, the PDF and a notebook's view share it."""
        if self._html is None:
            from .html import to_html

            self._html = to_html(self)
        return self._html

    def _repr_html_(self) -> str:
        """Jupyter and VS Code show the report inline: the same HTML, in an iframe so that its page styles stay
        off the notebook's own."""
        from .html import framed

        return framed(self.to_html())

    def write_html(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_html(), encoding="utf-8")
        return path

    def write_pdf(self, path: str | Path, html: str | None = None) -> Path:
        """Raises `PdfUnavailable` with install instructions when WeasyPrint cannot load."""
        from .html import write_pdf

        return write_pdf(html if html is not None else self.to_html(), Path(path))

    def write(self, out_dir: str | Path, formats=("json", "md", "html", "pdf"), progress=None) -> list[Path]:
        """Write each format into `out_dir`. A PDF that cannot be made (no WeasyPrint) does not stop the
        others: its reason goes to `self.skipped` and the rest are written."""
        from .html import PdfUnavailable

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.skipped: list[str] = []
        written = []
        from ..progress import as_progress

        progress = as_progress(progress)
        progress.phase("writing reports", len(formats))
        for fmt_ in formats:
            progress.update()
            if fmt_ == "json":
                written.append(self.write_json(out / "report.json"))
            elif fmt_ == "md":
                written.append(self.write_markdown(out / "report.md"))
            elif fmt_ in ("html", "pdf"):
                html = self.to_html()
                if fmt_ == "html":
                    (out / "report.html").write_text(html, encoding="utf-8")
                    written.append(out / "report.html")
                else:
                    try:
                        written.append(self.write_pdf(out / "report.pdf", html))
                    except PdfUnavailable as exc:
                        self.skipped.append(str(exc))
            else:
                raise ValueError(f"unknown report format {fmt_!r}")
        return written
