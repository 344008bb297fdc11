"""`audit diff BASE HEAD`: what changed between two audits (a pull request's base and head, a run before and
after a fix), as a pull-request comment in Markdown and an exit code.

Findings are matched by rule and the first layer they name; a finding whose rule and layer appear in both
reports is "changed" when its severity or title changed. Metrics are compared with a tolerance each, below
which a difference is noise (the values are the same probe's medians; see TOLERANCES).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .engine import SEVERITY_RANK
from .errors import AuditError
from .report import markdown as md
from .report.schema import check

# Below these a difference is reported as unchanged. Same seed, same batches: two audits of one model on one
# machine agree to the digit in every number but the timings, so these are set by what matters, not by noise.
TOLERANCES = {
    # Losses and the gradient norm: 10%, the margin fix verification uses to call a change an improvement
    # (auditor/verify.py, CHANGE).
    "relative": 0.10,
    # Update- and gradient-to-data ratios live on a log scale (the lecture's 1e-3 target, alarms at 10x from
    # it): a factor of 2 either way.
    "log10": math.log10(2),
    # Dead and saturated shares of an activation's units: 5 percentage points.
    "share": 0.05,
    # Probe speed (ms a step): timings of one machine vary by 5-10% run to run (bench/bench_probe.py), and
    # more across machines, so only a change of 25% is reported.
    "speed": 0.25,
}
FAIL_ON = ("new-error", "new-warning", "never")
MARKER = "<!-- training-run-auditor -->"
_ICON = {"error": "🔴", "warning": "🟠", "info": "🔵"}


def load(path: str | Path) -> dict:
    """A report.json, or the folder `audit --out` wrote, validated against report.schema.json."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.exists():
        raise AuditError(f"{path}: no such report; pass a report.json or the folder `audit --out` wrote")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AuditError(f"{path}: not valid JSON ({exc})") from None
    return check(data, str(path))


@dataclass
class Change:
    metric: str
    where: str
    base: float | None
    head: float | None
    changed: bool
    better: bool | None  # None: neither better nor worse (speed across devices, a share at 0)


@dataclass
class Diff:
    base: dict
    head: dict
    new: list[dict] = field(default_factory=list)
    fixed: list[dict] = field(default_factory=list)
    changed: list[tuple[dict, dict]] = field(default_factory=list)  # (base finding, head finding)
    same: list[dict] = field(default_factory=list)
    metrics: list[Change] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)

    def failed(self, fail_on: str) -> bool:
        """True when a finding that is new, or got more severe, reaches `fail_on`."""
        if fail_on == "never":
            return False
        if fail_on not in FAIL_ON:
            raise ValueError(f"fail_on must be one of {', '.join(FAIL_ON)}, not {fail_on!r}")
        floor = SEVERITY_RANK[fail_on.removeprefix("new-")]
        worse = [h for b, h in self.changed if SEVERITY_RANK[h["severity"]] > SEVERITY_RANK[b["severity"]]]
        return any(SEVERITY_RANK[f["severity"]] >= floor for f in self.new + worse)

    def summary(self) -> str:
        parts = [f"{len(self.new)} new", f"{len(self.fixed)} fixed", f"{len(self.changed)} changed",
                 f"{len(self.same)} unchanged"]
        moved = sum(c.changed for c in self.metrics)
        return f"{', '.join(parts)} finding(s); {moved} metric(s) changed beyond tolerance"


def _key(f: dict) -> tuple[str, str]:
    return f["rule"], (f["layers"][0] if f["layers"] else "")


def compare(base: dict, head: dict) -> Diff:
    diff = Diff(base, head)
    base_by = {_key(f): f for f in base["findings"]}
    head_by = {_key(f): f for f in head["findings"]}
    for key, h in head_by.items():
        b = base_by.get(key)
        if b is None:
            diff.new.append(h)
        elif b["severity"] != h["severity"] or b["title"] != h["title"]:
            diff.changed.append((b, h))
        else:
            diff.same.append(h)
    diff.fixed = [b for key, b in base_by.items() if key not in head_by]
    # A rule that moved from one layer to another is one changed finding, not one fixed and one new.
    for h in list(diff.new):
        b = next((b for b in diff.fixed if b["rule"] == h["rule"]), None)
        if b is not None:
            diff.new.remove(h)
            diff.fixed.remove(b)
            diff.changed.append((b, h))
    diff.metrics = _metric_changes(base, head)
    diff.caveats = _caveats(base, head)
    return diff


def _caveats(base: dict, head: dict) -> list[str]:
    """What makes two reports' numbers not comparable one for one."""
    out = []
    bp, hp = base["probe"], head["probe"]
    if bp.get("structure_hash") and hp.get("structure_hash") and bp["structure_hash"] != hp["structure_hash"]:
        out.append(f"the model's structure differs ({bp['parameters']:,} → {hp['parameters']:,} parameters): "
                   "per-layer numbers are compared only for layers in both")
    for key in ("steps", "seed", "stats_every"):
        if bp.get(key) != hp.get(key):
            out.append(f"the probes differ in {key} ({bp.get(key)} → {hp.get(key)})")
    be, he = base.get("environment", {}), head.get("environment", {})
    if be.get("torch") != he.get("torch"):
        out.append(f"torch differs ({be.get('torch', '?')} → {he.get('torch', '?')})")
    if bp["device"] != hp["device"] or be.get("device_name") != he.get("device_name"):
        out.append(f"the devices differ ({bp['device']} → {hp['device']}): probe speed is not compared")
    return out


def _median_tail(series: list, fraction: float = 0.1) -> float | None:
    values = [v for v in series[-max(1, int(len(series) * fraction)):] if v is not None]
    if not values:
        return None
    values.sort()
    n = len(values)
    return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])


def _median(series: list) -> float | None:
    return _median_tail(series, 1.0)


def _relative(metric, where, b, h, tol, lower_better=True) -> Change:
    if b is None or h is None:
        return Change(metric, where, b, h, (b is None) != (h is None), None)
    scale = max(abs(b), abs(h), 1e-12)
    changed = abs(h - b) / scale > tol
    return Change(metric, where, b, h, changed, (h < b) == lower_better if changed else None)


def _log_ratio(metric, where, b, h) -> Change:
    if b is None or h is None or b <= 0 or h <= 0:
        return Change(metric, where, b, h, (b is None) != (h is None), None)
    distance = abs(math.log10(h) - math.log10(b))
    # Healthy ratios sit near 1e-3 (the lecture's update-to-data target); closer to it is better.
    better = abs(math.log10(h) + 3) < abs(math.log10(b) + 3) if metric.startswith("update") else None
    changed = distance > TOLERANCES["log10"]
    return Change(metric, where, b, h, changed, better if changed else None)


def _share(metric, where, b, h) -> Change:
    if b is None or h is None:
        return Change(metric, where, b, h, (b is None) != (h is None), None)
    changed = abs(h - b) > TOLERANCES["share"]
    return Change(metric, where, b, h, changed, h < b if changed else None)


def _metric_changes(base: dict, head: dict) -> list[Change]:
    bm, hm = base["metrics"], head["metrics"]
    rel = TOLERANCES["relative"]
    out = [
        _relative("loss at init", "", base["probe"].get("initial_loss"), head["probe"].get("initial_loss"), rel),
        _relative("loss at the end of the probe", "", _median_tail(bm["loss"]), _median_tail(hm["loss"]), rel),
        _relative("gradient norm (median)", "", _median(bm["grad_norm"]), _median(hm["grad_norm"]), rel),
    ]
    if base["probe"]["device"] == head["probe"]["device"]:
        out.append(_relative("probe speed, ms/step", "", _ms_per_step(base), _ms_per_step(head),
                             TOLERANCES["speed"]))
    for name in [n for n in hm["parameters"] if n in bm["parameters"]]:
        b, h = bm["parameters"][name], hm["parameters"][name]
        out.append(_log_ratio("update-to-data ratio", name, b["update_data_ratio"], h["update_data_ratio"]))
        out.append(_log_ratio("gradient-to-data ratio", name, b["grad_data_ratio"], h["grad_data_ratio"]))
    for base_name, head_name in _paired(list(bm["activations"]), list(hm["activations"])):
        b, h = bm["activations"][base_name], hm["activations"][head_name]
        name = head_name if base_name == head_name else f"{base_name} → {head_name}"
        out.append(_share("dead share", name, b.get("dead"), h.get("dead")))
        out.append(_share("saturated share", name, b.get("saturated"), h.get("saturated")))
    return out


def _paired(base: list[str], head: list[str]) -> list[tuple[str, str]]:
    """Activations by name; then those named by call site (`tanh@model.py:26`), whose line moves when a
    pull request edits the file above them, by function and order of appearance."""
    pairs = [(n, n) for n in head if n in base]
    rest_b = [n for n in base if n not in head]
    rest_h = [n for n in head if n not in base]
    site = lambda n: n.rpartition("@")[0] if "@" in n else None  # noqa: E731
    if [site(n) for n in rest_b] == [site(n) for n in rest_h] and all(site(n) for n in rest_h):
        pairs += list(zip(rest_b, rest_h, strict=True))
    return pairs


def _ms_per_step(report: dict) -> float | None:
    p = report["probe"]
    return 1000 * p["loop_seconds"] / p["steps_run"] if p["steps_run"] else None


def _fmt(x) -> str:
    if x is None:
        return "n/a"
    if x != 0 and (abs(x) < 1e-2 or abs(x) >= 1e4):
        return f"{x:.2e}"
    return f"{x:.3g}"


def _delta(c: Change) -> str:
    if c.base is None or c.head is None:
        return "—"
    if c.metric.endswith("share"):
        return f"{100 * (c.head - c.base):+.1f} pp"
    if c.base and c.base > 0 and c.head > 0 and "ratio" in c.metric:
        return f"×{c.head / c.base:.2g}"
    return f"{c.head - c.base:+.3g}" if not c.base else f"{100 * (c.head - c.base) / abs(c.base):+.0f}%"


def to_markdown(diff: Diff, fail_on: str = "new-error", base_label: str = "base", head_label: str = "head") -> str:
    """A pull-request comment: verdict line, findings table (✘ new, ✔ fixed), each finding in a <details>
    block, the metrics that moved, and the unchanged ones folded."""
    failed = diff.failed(fail_on)
    head_verdict, base_verdict = diff.head["verdict"], diff.base["verdict"]
    mark = "✘" if failed else "✔"
    lines = [MARKER, f"## {mark} Training-run audit: {head_verdict} (was {base_verdict})", "",
             f"{diff.summary()}. Fails on: `{fail_on}`.", ""]
    lines += ["| | base | head |", "|---|---|---|",
              f"| Model | {md.code(diff.base['probe']['model_file'])} | {md.code(diff.head['probe']['model_file'])} |",
              f"| Verdict | {base_verdict} | {head_verdict} |",
              "| Errors / warnings / info | " + " | ".join(
                  f"{r['counts']['error']} / {r['counts']['warning']} / {r['counts']['info']}"
                  for r in (diff.base, diff.head)) + " |",
              f"| Root causes | {_roots(diff.base)} | {_roots(diff.head)} |", ""]
    if diff.caveats:
        lines += [f"> Note: {md.text(c)}" for c in diff.caveats] + [""]
    rows = ([("✘ new", f) for f in diff.new] + [("✘ worse" if _worse(b, h) else "~ changed", h)
                                                 for b, h in diff.changed]
            + [("✔ fixed", f) for f in diff.fixed])
    if rows:
        lines += ["### Findings", "", "| | Severity | Rule | Where | Finding |", "|---|---|---|---|---|"]
        for status, f in rows:
            where = ", ".join(md.code(x) for x in f["layers"][:2]) or "—"
            lines.append(f"| {status} | {_ICON[f['severity']]} {f['severity']} | `{f['rule']}` | {where} | "
                         f"{md.text(f['title'])} |")
        lines.append("")
        for status, f in rows:
            lines += _details(status, f)
    elif not diff.same:
        lines += ["No findings in either report.", ""]
    if diff.same:
        lines += [f"<details><summary>{len(diff.same)} finding(s) unchanged</summary>", "",
                  *[f"- {_ICON[f['severity']]} `{f['rule']}`: {md.text(f['title'])}" for f in diff.same], "",
                  "</details>", ""]
    moved = [c for c in diff.metrics if c.changed]
    still = [c for c in diff.metrics if not c.changed]
    lines += ["### Metrics", ""]
    if moved:
        lines += _metric_table(moved)
    else:
        lines.append("No metric moved beyond its tolerance.")
    lines.append("")
    if still:
        lines += [f"<details><summary>{len(still)} metric(s) within tolerance</summary>", "",
                  *_metric_table(still), "", "</details>", ""]
    tol = TOLERANCES
    lines += [f"<sub>Changed means: losses and gradient norm by more than {tol['relative']:.0%}, per-layer ratios "
              f"by more than ×2, dead or saturated shares by more than {tol['share'] * 100:.0f} points, probe speed "
              f"by more than {tol['speed']:.0%}. Findings are matched by rule and layer.</sub>", ""]
    return "\n".join(lines)


def _roots(report: dict) -> str:
    return ", ".join(f"`{r}`" for r in report["root_causes"]) or "—"


def _worse(b: dict, h: dict) -> bool:
    return SEVERITY_RANK[h["severity"]] > SEVERITY_RANK[b["severity"]]


def _details(status: str, f: dict) -> list[str]:
    fix_text, _, code = f["fix"].partition("\n\n")
    if f.get("fix_moot"):  # under a root whose fix is the only one: no code to paste for this one
        fix_text, code = f["fix_moot"], ""
    out = ["<details>", f"<summary>{status}: {_ICON[f['severity']]} <code>{f['rule']}</code>: "
           f"{_html(f['title'])}</summary>", "", md.text(f["diagnosis"]), "", f"**Fix.** {md.text(fix_text)}", ""]
    if code:
        fence = md.fence(code)
        out += [f"{fence}python", code, fence, ""]
    out += ["</details>", ""]
    return out


def _html(s: str) -> str:
    """Inside <summary>, raw HTML is parsed: escape it as HTML, and break @-mentions as md.text does."""
    import html

    return md.text_mentions(html.escape(str(s), quote=False))


def _metric_table(changes: list[Change]) -> list[str]:
    rows = ["| | Metric | Where | Base | Head | Δ |", "|---|---|---|---|---|---|"]
    for c in changes:
        icon = "✔" if c.better else "✘" if c.better is False else "·"
        where = md.code(c.where) if c.where else "model"
        rows.append(f"| {icon} | {c.metric} | {where} | {_fmt(c.base)} | {_fmt(c.head)} | {_delta(c)} |")
    return rows
