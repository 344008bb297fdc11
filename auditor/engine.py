"""Step 4 of the data flow: rules read the evidence and yield findings.

A rule is three plain things (after deepchecks' Check -> Condition -> Result): a measurement on the
evidence, thresholds the user can override, and findings. Each rule lives in one file of `rules/` and
carries its documentation, ruff-style: what it does, why it matters, an example, what to use instead,
known problems, references.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace

from torch import nn

from .errors import AuditError
from .evidence import Evidence

SEVERITIES = ("info", "warning", "error")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass
class Finding:
    rule: str
    severity: str
    title: str
    diagnosis: str
    fix: str
    layers: list[str] = field(default_factory=list)
    evidence: dict = field(default_factory=dict)
    # The step at which the anomaly began (0: before any update, a property of the setup or data); None where
    # the rule measures once, at the end. auditor/causes.py orders causes by it.
    onset: int | None = None
    # The knob the fix turns and which way, e.g. "lr-down", "lr-up": two findings that turn one knob opposite
    # ways are never shown side by side as equals.
    advice: str | None = None
    # Filled by fix verification: {"fix", "metric", "before", "after", "outcome", "resolved", ...} or {"reason"}.
    verified: dict | None = None
    # Filled by auditor/causes.py: rule ids this finding explains and is explained by, and why.
    explains: list[str] = field(default_factory=list)
    explained_by: list[str] = field(default_factory=list)
    because: dict = field(default_factory=dict)  # {cause rule id: "counterfactual" | "mechanism: ..." | ...}

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FixPlan:
    """A mechanical fix, applied by auditor/verify.py to copies: the probe is re-run with it, same seed and
    batches, and the rule's metric compared before and after."""

    description: str
    model_edit: Callable[[nn.Module], None] | None = None  # mutates a copy of the initial model
    lr: float | None = None  # every parameter group's learning rate
    clip_grad_norm: float | None = None
    batch_transform: Callable | None = None  # applied to each (inputs, targets) batch
    add_missing_params: bool = False  # parameters the optimizer left out get a group of their own


@dataclass(frozen=True)
class Threshold:
    default: float
    help: str
    source: str


class Rule:
    """Subclass, set the class attributes, implement `check`; put one instance in the module as `RULE`."""

    id: str = ""
    summary: str = ""
    thresholds: dict[str, Threshold] = {}
    why: str = ""
    example: str = ""
    use_instead: str = ""
    known_problems: str = ""
    references: tuple[str, ...] = ()

    def check(self, evidence: Evidence, t: SimpleNamespace) -> Iterable[Finding]:
        raise NotImplementedError

    # Fix verification: a rule whose fix is mechanical returns a FixPlan and measures `metric` on evidence.
    metric: str = ""
    # Which way the metric should move: "lower" is better, or a number the metric should approach.
    metric_goal: str | float = "lower"
    needs_checks: bool = False  # whether the re-probe must run the experiments this rule reads
    # Evidence fields the rule reads that only the experiments fill; on a re-probe without them the rule
    # cannot be judged, so its silence there is no evidence that a fix removed it.
    reads: tuple[str, ...] = ()
    # True for what is wrong before any update (the data, the structure, the initialisation, the settings):
    # its findings' onset is step 0 unless the rule says otherwise.
    from_start: bool = False

    def plan_fix(self, ev: Evidence, finding: Finding) -> FixPlan | None:
        return None

    def measure(self, ev: Evidence, finding: Finding) -> float | None:
        return None

    def draw_fixed(self, ax, ev: Evidence, after: Evidence, finding: Finding) -> bool:
        """Optionally draw the metric before and after the fix; False leaves the report's default bars."""
        return False

    def draw(self, ax, ev: Evidence, finding: Finding) -> None:
        """The finding's evidence figure on a matplotlib Axes; the loss curve unless the rule overrides it."""
        from .report import figures

        figures.loss_curve(ax, ev)

    def finding(self, severity: str, title: str, diagnosis: str, fix: str, layers=(), *, onset: int | None = None,
                advice: str | None = None, **evidence) -> Finding:
        return Finding(self.id, severity, title, diagnosis, fix, list(layers), _plain(evidence),
                       onset=None if onset is None else int(onset), advice=advice)

    def explain(self) -> str:
        lines = [f"{self.id}", "", f"What it does: {self.summary}", "", "Why is this bad?", self.why.strip()]
        if self.example:
            lines += ["", "Example:", _indent(self.example)]
        if self.use_instead:
            lines += ["", "Use instead:", _indent(self.use_instead)]
        if self.known_problems:
            lines += ["", "Known problems:", self.known_problems.strip()]
        if self.thresholds:
            lines += ["", "Options (override in [tool.auditor.rules." + self.id + "] or --set "
                      + self.id + ".NAME=VALUE):"]
            for name, th in self.thresholds.items():
                lines.append(f"  {name} = {th.default}  {th.help} (source: {th.source})")
        if self.references:
            lines += ["", "References:"] + [f"  - {r}" for r in self.references]
        return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.strip("\n").splitlines())


def _plain(value):
    """Evidence goes into JSON: numpy scalars and arrays become floats and lists, NaN becomes None."""
    import math

    import numpy as np

    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def load_rules() -> dict[str, Rule]:
    package = importlib.import_module("auditor.rules")
    rules = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"auditor.rules.{info.name}")
        rule = getattr(module, "RULE", None)
        if isinstance(rule, Rule):
            rules[rule.id] = rule
    return rules


def resolve_thresholds(rules: dict[str, Rule], overrides: dict[str, dict[str, float]]) -> dict[str, SimpleNamespace]:
    for rule_id, values in overrides.items():
        if rule_id not in rules:
            raise AuditError(f"unknown rule {rule_id!r} in threshold overrides; `audit rules` lists them")
        for name in values:
            if name not in rules[rule_id].thresholds:
                known = ", ".join(rules[rule_id].thresholds) or "none"
                raise AuditError(f"rule {rule_id!r} has no threshold {name!r} (it has: {known})")
    return {rid: SimpleNamespace(**{n: float(overrides.get(rid, {}).get(n, th.default))
                                    for n, th in rule.thresholds.items()})
            for rid, rule in rules.items()}


def run_rules(evidence: Evidence, rules: dict[str, Rule], thresholds: dict[str, SimpleNamespace],
              ignore: Iterable[str] = ()) -> list[Finding]:
    ignore = set(ignore)
    findings = []
    for rule_id, rule in rules.items():
        if rule_id not in ignore:
            for f in rule.check(evidence, thresholds[rule_id]):
                if f.onset is None and rule.from_start:
                    f.onset = 0
                findings.append(f)
    return sorted(findings, key=lambda f: (-SEVERITY_RANK[f.severity], f.rule))
