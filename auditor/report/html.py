"""The HTML report (one self-contained file) and the PDF made from the same HTML."""

from __future__ import annotations

import importlib.resources
from collections import Counter
from pathlib import Path

import jinja2
import numpy as np

from ..engine import load_rules
from ..evidence import fmt, pct
from ..verify import MOOT, OUTCOMES
from . import figures
from .figures import Job

PDF_HINT = ("pip install weasyprint, and its system libraries Pango and HarfBuzz (Debian/Ubuntu: apt-get install "
            "libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b; macOS: brew install pango)")


class PdfUnavailable(Exception):
    """WeasyPrint or the system libraries it loads are missing: the other formats are still written."""


def _environment() -> jinja2.Environment:
    folder = str(importlib.resources.files("auditor.templates"))
    # Layer names, file paths and exception messages come from user code: autoescape everything.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(folder), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = lambda x, d=3: fmt(float(x), d) if _defined(x) else "–"
    env.filters["pct"] = lambda x: pct(float(x)) if _defined(x) else "–"
    env.filters["log10"] = lambda x: f"{np.log10(float(x)):.1f}" if _defined(x) and float(x) > 0 else "–"
    return env


def _defined(x) -> bool:
    try:
        return x is not None and bool(np.isfinite(float(x)))
    except (TypeError, ValueError):
        return False


def _finding_figures(report) -> list[tuple[Job, Job | None]]:
    """(evidence figure, before/after figure or None) per finding, to draw."""
    rules = report.catalogue or load_rules()
    out = []
    for f in report.findings:
        rule = rules.get(f.rule)
        evidence = Job(lambda ax, rule=rule, f=f: rule.draw(ax, report.evidence, f))
        after = getattr(f, "after", None)
        proof = None
        if after is not None:
            def own(ax, rule=rule, f=f, after=after):
                return rule.draw_fixed(ax, report.evidence, after, f)

            proof = Job(lambda axes, f=f, after=after, own=own: figures.before_after(
                axes, report.evidence, after, f.verified, own), width=7.2, height=2.6, panels=2)
        out.append((evidence, proof))
    return out


def _panels(ev) -> list[tuple[str, str, Job]]:
    """(title, caption, figure to draw) for the practitioner's panels, in the order they are read."""
    last = ev.probe.steps_run - 1
    panels = [
        ("Loss curve", "Training loss per batch over the probe, with its running median and the loss a "
         "well-initialised model starts at.", Job(lambda ax: figures.loss_curve(ax, ev))),
        ("Activations at initialisation", "Distribution of each activation's output on the first batch "
         "(the makemore lecture's forward-pass histogram). Legend: mean, std, saturated or dead share.",
         Job(lambda ax: figures.activation_histograms(ax, ev, step=0))),
        ("Activations at the end of the probe", f"The same at step {last}.",
         Job(lambda ax: figures.activation_histograms(ax, ev, step=last))),
        ("Gradients at the activations", "Distribution of the gradient arriving at each activation's output "
         "on the first batch: similar widths across layers mean the backward pass is well scaled.",
         Job(lambda ax: figures.activation_histograms(ax, ev, step=0, gradients=True))),
        ("Update-to-data ratio", "log10 of ‖Δw‖/‖w‖ per weight tensor at each measured step; the dashed line "
         "is the ~1e-3 the lecture recommends.", Job(lambda ax: figures.update_ratio(ax, ev))),
        ("Gradient-to-data ratio", "Median ‖grad‖/‖w‖ per weight tensor over the later half of the probe.",
         Job(lambda ax: figures.grad_data_ratio(ax, ev))),
        ("Global gradient norm", "Norm of all gradients together, every step.",
         Job(lambda ax: figures.grad_norm(ax, ev))),
    ]
    return panels


def _layer_types(ev) -> str:
    counts = Counter()
    seen = set()
    for p in ev.params:
        owner = p.name.rpartition(".")[0]
        if owner not in seen:
            seen.add(owner)
            counts[p.module_type] += 1
    return ", ".join(f"{t} ×{n}" if n > 1 else t for t, n in counts.most_common())


def to_html(report) -> str:
    from . import _metrics  # the same per-layer medians as report.json

    ev = report.evidence
    metrics = _metrics(ev)
    params = [{"name": name, **m} for name, m in metrics["parameters"].items()]
    acts = [{"name": name, **m} for name, m in metrics["activations"].items()]
    timeline = Job(lambda axes: figures.timeline(axes, ev, report.findings), width=7.2, height=2.6,
                   panels=2) if report.findings else None
    finding_figures, panels = _finding_figures(report), _panels(ev)
    # Every figure drawn in one go, spread over the CPUs (figures.render_all): each is drawn once, and the
    # HTML file, the PDF and a notebook's view share the page.
    jobs = [j for j in [timeline, *(x for pair in finding_figures for x in pair), *(p[2] for p in panels)] if j]
    drawn = dict(zip(map(id, jobs), figures.render_all(jobs), strict=True))

    def uri(job):
        return drawn[id(job)] if job is not None else None

    return _environment().get_template("report.html.j2").render(
        report=report, probe=report.probe, counts=report.counts, findings=report.findings,
        causes=report.causes(), timeline=uri(timeline), outcome_words=OUTCOMES, moot_words=MOOT,
        finding_figures=[(uri(a), uri(b)) for a, b in finding_figures],
        panels=[(title, caption, uri(job)) for title, caption, job in panels], layer_types=_layer_types(ev),
        params=params, acts=acts)


def framed(html: str) -> str:
    """`html` as an iframe's srcdoc: the notebook shows the page as the browser would, its styles scoped to the
    frame. The frame grows to its page's height where the notebook runs scripts (a trusted one), else scrolls."""
    import html as html_lib

    grow = "this.style.height=(this.contentWindow.document.documentElement.scrollHeight+20)+'px'"
    return (f'<iframe srcdoc="{html_lib.escape(html, quote=True)}" onload="{grow}" '
            'style="width:100%;height:900px;border:1px solid #ddd;border-radius:4px"></iframe>')


def write_pdf(html: str, path: Path) -> Path:
    try:
        import weasyprint
    except (ImportError, OSError) as exc:  # OSError: the package is there but Pango is not
        raise PdfUnavailable(f"report.pdf not written: WeasyPrint could not load ({str(exc).splitlines()[0]}). "
                             f"To get PDF: {PDF_HINT}") from None
    weasyprint.HTML(string=html).write_pdf(path)
    return path
