"""Figures for the HTML/PDF report: matplotlib (Agg), rendered to PNG and inlined as data URIs.

Each function draws one panel on a given Axes; rules call them from their `draw` method to show the
evidence behind a finding, and the report uses them for the practitioner's panels. PNG rather than SVG:
histograms of thousands of samples make SVGs of megabytes, and WeasyPrint lays a PNG out faster.
"""

from __future__ import annotations

import base64
import io

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..evidence import Evidence, nanmedian, smooth

GUIDE_UPDATE = -3.0  # log10 update-to-data ratio the makemore lecture calls healthy (~1e-3)
MAX_LINES = 8  # layers per panel before the legend stops being readable
_COLOURS = matplotlib.colormaps["viridis"]


def render(draw, width: float = 6.4, height: float = 2.8, panels: int = 1) -> str:
    """Run `draw(ax)` (or `draw(axes)` for several panels side by side) on a fresh figure; a PNG data URI.

    A bare Figure on the Agg canvas, not pyplot (0.6 s to import, and a figure registry to close), and margins
    set from what was drawn rather than by constrained layout: measuring every tick label to place the axes was
    half of each figure's time (1.2 of 2.7 s for the makemore report's 13 figures)."""
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.subplots(1, panels)
    draw(ax)
    _margins(fig, list(np.atleast_1d(ax)), width, height)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _margins(fig, axes: list, width: float, height: float) -> None:
    """Margins in inches from what the panels carry: a y label and its tick labels on the left, x tick labels
    slanted at 45 degrees (layer names of up to 18 characters at 6.5 pt) or level below, a title above."""
    shown = [ax for ax in axes if ax.axison]
    slanted = [len(t.get_text()) for ax in shown for t in ax.get_xticklabels() if t.get_rotation()]
    titled = any(ax.get_title() for ax in axes)
    bottom = 0.5 + 0.035 * max(slanted, default=0)  # a 6.5-pt character at 45 degrees: about 0.035 in tall
    top = 0.3 if titled else 0.12
    fig.subplots_adjust(left=0.72 / width, right=1 - 0.12 / width, bottom=bottom / height, top=1 - top / height,
                        wspace=0.85 / (width / len(axes)))


def render_all(jobs: list) -> list[str]:
    """Every figure of a report (figures.Job), as PNG data URIs in the order given. One after another: forked
    workers were tried (two cores, half the time) and hung under `audit` (a worker stuck on a lock another thread
    held at the fork): a pre-flight check that can hang is worse than one that takes a second longer."""
    return [render(j.draw, j.width, j.height, j.panels) for j in jobs]


def _colour(i: int, n: int):
    return _COLOURS(0.1 + 0.8 * i / max(n - 1, 1))


def _pick(items: list, names: list[str] | None) -> list:
    if names:
        chosen = [x for x in items if x.name in set(names)]
        if chosen:
            return chosen[:MAX_LINES]
    return items[:MAX_LINES]


def _label(name: str, width: int = 28) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1):]


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_axis_off()


def loss_curve(ax, ev: Evidence, expected: bool = True, mark: list[int] | None = None) -> None:
    steps = np.arange(ev.loss.size)
    finite = np.isfinite(ev.loss)
    if not finite.any():
        return _empty(ax, "the loss was never finite")
    ax.plot(steps[finite], ev.loss[finite], lw=1, color="C0", label="training loss (per batch)")
    ax.plot(steps, smooth(ev.loss, 9), lw=2, color="C1", label="running median (9 steps)")
    # The expectation is per element; a curve in other units (a summed loss, one divided for accumulation) gets
    # no line at a height that means nothing on it.
    p = ev.probe
    same_units = not (p.start_loss and p.initial_loss and abs(p.start_loss / p.initial_loss - 1) > 0.5)
    if expected and p.expected_initial_loss is not None and same_units:
        ax.axhline(ev.probe.expected_initial_loss, ls="--", color="0.3", lw=1,
                   label=f"expected at init: {ev.probe.expected_initial_loss:.3g}")
    if mark:
        ax.plot(mark, ev.loss[mark], "o", ms=4, color="C3", label="marked steps")
    if np.nanmax(ev.loss[finite]) / max(np.nanmin(np.abs(ev.loss[finite])), 1e-12) > 50:
        ax.set_yscale("log")
    ax.set_xlabel("probe step")
    ax.set_ylabel(f"loss ({ev.probe.loss_fn})")
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)


def initial_loss(ax, ev: Evidence) -> None:
    losses = ev.initial_losses
    labels = [f"batch {i}" for i in range(len(losses))]
    ax.bar(labels, losses, color="C3", label="measured loss at init")
    if ev.probe.expected_initial_loss is not None:
        ax.axhline(ev.probe.expected_initial_loss, ls="--", color="0.2",
                   label=f"expected: {ev.probe.expected_initial_loss:.3g} ({ev.probe.expected_initial_loss_reason})")
    ax.set_ylabel("loss before any update")
    top = max([*losses, ev.probe.expected_initial_loss or 0]) if losses else 1
    ax.set_ylim(0, top * 1.35)  # room for the legend above the bars
    ax.legend(fontsize=7, loc="upper center", ncols=2)
    ax.grid(alpha=0.3, axis="y")


def activation_histograms(ax, ev: Evidence, names: list[str] | None = None, step: int | None = None,
                          band: float | None = None, gradients: bool = False) -> None:
    """The lecture's figure: one density line per layer, with mean, std and saturation in the legend."""
    acts = _pick([a for a in ev.activations if (a.grad_histograms if gradients else a.histograms)], names)
    if not acts:
        return _empty(ax, "no activation " + ("gradients" if gradients else "values") + " were recorded")
    for i, a in enumerate(acts):
        hist = a.grad_histograms if gradients else a.histograms
        at = step if step in hist else min(hist)
        values = hist[at][np.isfinite(hist[at])]
        if values.size == 0:
            continue
        density, edges = np.histogram(values, bins=60, density=True)
        centres = (edges[:-1] + edges[1:]) / 2
        extra = ""
        if not gradients and a.kind in ("tanh", "sigmoid"):
            extra = f", sat {100 * _at(a.saturated, at):.0f}%"
        elif not gradients and a.kind in ("relu", "smooth"):
            extra = f", dead {100 * _at(a.dead, at):.0f}%"
        ax.plot(centres, density, lw=1.3, color=_colour(i, len(acts)),
                label=f"{_label(a.name)} ({a.kind}): mean {values.mean():+.2g}, std {values.std():.2g}{extra}")
    if band is not None:
        for sign in (-1, 1):
            ax.axvline(sign * band, ls="--", color="C3", lw=1)
        ax.axvspan(band, ax.get_xlim()[1], color="C3", alpha=0.08)
        ax.axvspan(ax.get_xlim()[0], -band, color="C3", alpha=0.08, label=f"saturated: |x| > {band}")
    ax.set_xlabel("gradient at the activation's output" if gradients else "activation value")
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))  # gradients of 1e-4 need an offset, not 0.0001
    ax.set_ylabel("density")
    ax.set_title(f"step {step if step is not None else 0}", fontsize=8)
    ax.legend(fontsize=6.5, loc="upper right")
    ax.grid(alpha=0.3)


def _at(series: np.ndarray, step: int) -> float:
    value = series[step] if step < series.size else np.nan
    return float(value) if np.isfinite(value) else float(nanmedian(series))


def update_ratio(ax, ev: Evidence, names: list[str] | None = None) -> None:
    """log10 ‖Δw‖/‖w‖ per weight over the probe, against the lecture's 1e-3 guide."""
    mats = _pick(ev.matrices(), names)
    drawn = False
    for i, p in enumerate(mats):
        r = p.update_data_ratio
        ok = np.isfinite(r) & (r > 0)
        if ok.any():
            ax.plot(np.flatnonzero(ok), np.log10(r[ok]), ".-", lw=1, ms=3, color=_colour(i, len(mats)),
                    label=_label(p.name))
            drawn = True
    if not drawn:
        return _empty(ax, "no update ratios were measured")
    ax.axhline(GUIDE_UPDATE, ls="--", color="k", lw=1, label="guide: 1e-3")
    ax.set_xlabel("probe step")
    ax.set_ylabel("log10 ‖Δw‖ / ‖w‖")
    ax.legend(fontsize=6.5, loc="upper right")
    ax.grid(alpha=0.3)


def grad_data_ratio(ax, ev: Evidence, names: list[str] | None = None) -> None:
    """Median ‖g‖/‖w‖ per weight in forward order: bars a decade apart learn at very different speeds."""
    mats = ev.matrices()
    values = [nanmedian(p.grad_data_ratio[ev.window()]) for p in mats]
    keep = [(p, v) for p, v in zip(mats, values, strict=True) if np.isfinite(v) and v > 0]
    if not keep:
        return _empty(ax, "no gradient-to-data ratios were measured")
    highlight = set(names or [])
    labels = [_label(p.name, 18) for p, _ in keep]
    colours = ["C3" if p.name in highlight else "C0" for p, _ in keep]
    ax.bar(range(len(keep)), [v for _, v in keep], color=colours)
    ax.set_yscale("log")
    ax.set_xticks(range(len(keep)), labels, rotation=45, ha="right", fontsize=6.5)
    ax.set_ylabel("median ‖grad‖ / ‖w‖")
    ax.set_xlabel("weight tensor, input side first")
    ax.grid(alpha=0.3, axis="y")


def depth_profile(ax, names: list[str], scale: np.ndarray, source: str, highlight: list[str] | None = None) -> None:
    ax.plot(range(len(names)), scale, "o-", color="C0")
    for i, n in enumerate(names):
        if highlight and n in highlight:
            ax.plot(i, scale[i], "o", ms=9, color="C3")
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), [_label(n, 18) for n in names], rotation=45, ha="right", fontsize=6.5)
    ax.set_ylabel(f"gradient std ({source})")
    ax.set_xlabel("layer, input side first")
    ax.grid(alpha=0.3)


def per_step(ax, series: dict[str, np.ndarray], ylabel: str, log: bool = False, guide: float | None = None,
             guide_label: str = "") -> None:
    """Any per-step quantity of a few layers; NaN steps (unmeasured) are skipped, not drawn as gaps."""
    items = list(series.items())[:MAX_LINES]
    for i, (name, values) in enumerate(items):
        ok = np.isfinite(values)
        ax.plot(np.flatnonzero(ok), values[ok], ".-", lw=1, ms=3, color=_colour(i, len(items)), label=_label(name))
    if guide is not None:
        ax.axhline(guide, ls="--", color="C3", lw=1, label=guide_label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("probe step")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=6.5)
    ax.grid(alpha=0.3)


def grad_norm(ax, ev: Evidence) -> None:
    ok = np.isfinite(ev.grad_norm) & (ev.grad_norm > 0)
    if not ok.any():
        return _empty(ax, "no finite gradient norm was measured")
    ax.plot(np.flatnonzero(ok), ev.grad_norm[ok], lw=1, color="C2")
    if ev.grad_norm[ok].max() > 10 * ev.grad_norm[ok].min():
        ax.set_yscale("log")
    ax.set_xlabel("probe step")
    ax.set_ylabel("global gradient norm")
    ax.grid(alpha=0.3)


def bars(ax, labels: list[str], values: list[float], ylabel: str, log: bool = False, highlight=(),
         guide: float | None = None, guide_label: str = "") -> None:
    if not values:
        return _empty(ax, "nothing to show")
    colours = ["C3" if lab in set(highlight) else "C0" for lab in labels]
    ax.bar(range(len(values)), values, color=colours)
    if guide is not None:
        ax.axhline(guide, ls="--", color="k", lw=1, label=guide_label)
        ax.legend(fontsize=7)
    if log:
        ax.set_yscale("log")
    ax.set_xticks(range(len(labels)), [_label(lab, 18) for lab in labels], rotation=45, ha="right", fontsize=6.5)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, axis="y")


def curves(ax, lines: dict[str, tuple], xlabel: str, ylabel: str, logx: bool = False, logy: bool = False,
           vlines: dict[str, float] | None = None, hlines: dict[str, float] | None = None) -> None:
    """Named (x, y) lines, plus labelled vertical and horizontal markers."""
    for i, (name, (x, y)) in enumerate(lines.items()):
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        ax.plot(x[ok], y[ok], lw=1.4, color=f"C{i}", label=name)
    for i, (name, x) in enumerate((vlines or {}).items()):
        if x is not None and np.isfinite(x):
            ax.axvline(x, ls="--", lw=1, color=f"C{i + 3}", label=name)
    for i, (name, y) in enumerate((hlines or {}).items()):
        if y is not None and np.isfinite(y):
            ax.axhline(y, ls=":", lw=1.2, color=f"C{i + 6}", label=name)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def before_after(axes, ev, after, verified: dict, draw_metric=None) -> None:
    """The fix's proof: loss curves of the probe and of the fixed copy overlaid, and the rule's metric
    (or the rule's own before/after panel, `draw_metric(ax)`)."""
    left, right = axes
    for label, e, colour in (("as is", ev, "C3"), ("with the fix", after, "C2")):
        ok = np.isfinite(e.loss)
        left.plot(np.flatnonzero(ok), e.loss[ok], lw=1, color=colour, alpha=0.45)
        left.plot(np.arange(e.loss.size), smooth(e.loss, 9), lw=2, color=colour, label=label)
    finite = np.concatenate([e.loss[np.isfinite(e.loss)] for e in (ev, after)])
    if finite.size and finite.max() / max(np.abs(finite).min(), 1e-12) > 50:
        left.set_yscale("log")
    left.set_xlabel("probe step (same seed and batches)")
    left.set_ylabel(f"loss ({ev.probe.loss_fn})")
    left.legend(fontsize=7)
    left.grid(alpha=0.3)
    if draw_metric is not None and draw_metric(right):
        return
    values = [verified.get("before"), verified.get("after")]
    if None in values:
        return _empty(right, "metric not measurable")
    right.bar(["as is", "with the fix"], values, color=["C3", "C2"])
    if all(np.isfinite(values)) and min(values) >= 0 and max(values) > 0:
        right.set_ylim(0, max(values) * 1.15)  # headroom: the value labels stay clear of the title
    for i, v in enumerate(values):
        right.text(i, v, f"{v:.3g}", ha="center", va="bottom" if v >= 0 else "top", fontsize=8)
    right.set_title(verified["metric"], fontsize=7.5, wrap=True)
    right.grid(alpha=0.3, axis="y")


def chain(ax, calls: list[tuple[str, str]], highlight=()) -> None:
    """The last layers of the forward pass as boxes, left to right, the flagged ones in red."""
    calls = calls[-6:]
    if not calls:
        return _empty(ax, "no layers were traced")
    for i, (name, kind) in enumerate(calls):
        colour = "#fdecea" if name in set(highlight) else "#eef2f7"
        edge = "C3" if name in set(highlight) else "0.5"
        ax.text(i, 0, f"{kind}\n{_label(name, 14)}", ha="center", va="center", fontsize=7.5,
                bbox={"boxstyle": "round,pad=0.5", "facecolor": colour, "edgecolor": edge})
        if i:
            ax.annotate("", xy=(i - 0.42, 0), xytext=(i - 0.58, 0), arrowprops={"arrowstyle": "->", "color": "0.4"})
    ax.set_xlim(-0.6, len(calls) - 0.4)
    ax.set_ylim(-1, 1)
    ax.set_axis_off()
    ax.set_title("the last layers of the forward pass, input side left", fontsize=8)


def timeline(axes, ev: Evidence, findings: list) -> None:
    """Loss (left) and global gradient norm (right) over the probe, each anomaly's onset marked: what began
    first is read off left to right."""
    loss_curve(axes[0], ev, expected=False)
    grad_norm(axes[1], ev)
    onsets: dict[int, list[str]] = {}
    for f in findings:
        if f.onset is not None and f.severity != "info":
            onsets.setdefault(int(f.onset), []).append(f.rule)
    for i, (step, rules) in enumerate(sorted(onsets.items())):
        for ax in axes:
            ax.axvline(step, color=_colour(i, len(onsets)), ls="--", lw=1)
        label = "\n".join(rules[:3]) + (f"\n+{len(rules) - 3}" if len(rules) > 3 else "")
        axes[1].annotate(f"{step}: {label}", xy=(step, 1), xycoords=("data", "axes fraction"), xytext=(3, -3 - 26 * i),
                         textcoords="offset points", va="top", fontsize=7, color=_colour(i, len(onsets)))
    axes[0].set_title("loss", fontsize=9)
    axes[1].set_title("gradient norm, with each anomaly's onset", fontsize=9)
