"""Step 4 of the data flow: rules read the evidence and yield findings.

A rule is three plain things (after deepchecks' Check -> Condition -> Result): a measurement on the
evidence, thresholds the user can override, and findings. Each rule lives in one file of `rules/` and
carries its documentation, ruff-style: what it does, why it matters, an example, what to use instead,
known problems, references.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING

from .errors import AuditError, from_user_exception
from .evidence import Evidence

if TYPE_CHECKING:  # torch is imported by what runs a probe, not by `audit rules` or `audit --help`
    from torch import nn

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
    # Filled by auditor/causes.py under a root whose fix is the only one (evidence "sole_fix": labels unrelated
    # to their inputs), or under a cause that advises the opposite change of the rate: why this finding's own fix,
    # even verified on a copy, is none here.
    fix_moot: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FixPlan:
    """A mechanical fix, applied by auditor/verify.py to copies: the probe is re-run with it, same seed and
    batches, and the rule's metric compared before and after."""

    description: str
    model_edit: Callable[[nn.Module], None] | None = None  # mutates a copy of the initial model
    lr: float | None = None  # every parameter group's learning rate
    optimizer_settings: dict | None = None  # eps, momentum, weight_decay, ... for every group
    clip_grad_norm: float | None = None
    batch_transform: Callable | None = None  # applied to each (inputs, targets) batch
    add_missing_params: bool = False  # parameters the optimizer left out get a group of their own
    amp: str | None = None  # another precision for the probe (bf16 instead of fp16)
    scaler_init: float | None = None  # another GradScaler init_scale
    float32_modules: tuple[str, ...] = ()  # modules kept outside autocast, in float32
    scheduler_every: int | None = None  # the LR scheduler stepped once every this many steps (an epoch's worth)
    # A linear warm-up over the first this many steps, on top of any schedule, from a tenth of the rate as
    # torch's LinearLR(start_factor=0.1) (auditor/probe/optim.py: warmup_factor).
    warmup: int | None = None
    # Fixes of a script's own loop, applied through the same hooks that observe it (auditor/probe/loopwatch.py):
    zero_grad: bool = False  # gradients cleared at each step's first backward (and not between backward and step)
    train_mode: bool = False  # model.train() before every forward with gradients
    eval_no_grad: bool = False  # model.eval() around every forward without gradients (validation)
    unscale_before_clip: bool = False  # the GradScaler unscales before the script's clipping
    clip_max_norm: float | None = None  # the script's own clip_grad_norm_ clips at this norm instead
    # The model edit as data, so that a script re-run in a fresh process can apply it too: (parameter name,
    # "scale" | "fill" | "normal" (redrawn with that std), value). model_edit, a function, only reaches the
    # replay's copies.
    param_edits: tuple[tuple[str, str, float], ...] = ()

    def __post_init__(self):
        if self.model_edit is None and self.param_edits:
            self.model_edit = lambda model: apply_param_edits(model, self.param_edits)


def apply_param_edits(model: nn.Module, edits) -> None:
    import torch

    with torch.no_grad():
        for name, op, value in edits:
            param = model.get_parameter(name)
            if op == "scale":
                param.mul_(value)
            elif op == "fill":
                param.fill_(value)
            elif op == "normal":
                param.normal_(0.0, value)
            else:
                raise ValueError(f"unknown parameter edit {op!r}")


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

    def metric_of(self, finding: Finding) -> str:
        """What measure() reads for this finding: `metric`, unless a rule with findings of two kinds says."""
        return self.metric
    # Which way the metric should move: "lower" is better, or a number the metric should approach.
    metric_goal: str | float = "lower"
    # Whether a fix that leaves the training loss higher made things worse: not for a fix that turns dropout back
    # on, whose training loss is higher by design.
    compares_loss: bool = True
    needs_checks: bool = False  # whether the re-probe must run the experiments this rule reads
    # Why a finding without a FixPlan is not verified, as the report says it.
    unverified_because: str = "the fix depends on the model's intent, so the auditor does not apply one"
    # Evidence fields the rule reads that only the experiments fill; on a re-probe without them the rule
    # cannot be judged, so its silence there is no evidence that a fix removed it.
    reads: tuple[str, ...] = ()
    # True where the harm a finding claims is what its fix prevents within the probe (a gradient spike undoing
    # progress): a fix that, on a copy, leaves the training loss where it was refutes it (auditor/verify.py).
    harm_is_fixable: bool = False
    # True for what is wrong before any update (the data, the structure, the initialisation, the settings):
    # its findings' onset is step 0 unless the rule says otherwise.
    from_start: bool = False

    def plan_fix(self, ev: Evidence, finding: Finding) -> FixPlan | list[FixPlan] | None:
        """The mechanical fix, or several: each is verified on its own copy, and the first is the one the root
        causes are judged by (the others are alternatives a user may prefer)."""
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


def load_rules(plugins: Iterable[str] = ()) -> dict[str, Rule]:
    """The built-in catalogue, then the rules of every installed package that exposes the entry-point group
    `auditor.rules`, then `plugins` (module names, or paths to a .py file or a package folder, from
    `[tool.auditor] plugins`). A plugin rule is written as a built-in is: a module with `RULE = MyRule()`, or a
    package of such modules."""
    return dict(_load_rules(tuple(plugins)))


@functools.cache
def _load_rules(plugins: tuple[str, ...]) -> tuple[tuple[str, Rule], ...]:
    rules = dict(_rules_in(importlib.import_module("auditor.rules")))
    builtin = set(rules)
    sources = [(f"entry point {ep.name} = {ep.value}", ep.value) for ep in _entry_points()]
    sources += [(f"plugin {p!r}", p) for p in plugins]
    for where, spec in sources:
        module = _import_plugin(spec, where)
        found = _rules_in(module)
        if not found:
            raise AuditError(f"{where}: defines no rule (a module with `RULE = SomeRule()`, or a package of them)")
        for rule_id, rule in found:
            if rule_id in builtin:
                raise AuditError(f"{where}: rule id {rule_id!r} clashes with a built-in rule; give it another id")
            if rule_id in rules:
                raise AuditError(f"{where}: rule id {rule_id!r} is defined twice among the plugins")
            rules[rule_id] = rule
    return tuple(rules.items())


def _entry_points():
    from importlib.metadata import entry_points

    return sorted(entry_points(group="auditor.rules"), key=lambda ep: ep.name)


def _import_plugin(spec: str, where: str) -> ModuleType:
    path = Path(spec)
    try:
        if spec.endswith(".py") or "/" in spec or path.is_dir():
            if not path.exists():
                raise AuditError(f"{where}: no such file or folder")
            folder, name = (path.parent, path.stem) if path.suffix == ".py" else (path.parent, path.name)
            sys.path.insert(0, str(folder.resolve()))
            try:
                return importlib.import_module(name)
            finally:
                sys.path.remove(str(folder.resolve()))
        return importlib.import_module(spec)
    except AuditError:
        raise
    except ImportError as exc:
        raise AuditError(f"{where}: cannot be imported ({exc}); install it, or give a path to it") from None
    except Exception as exc:
        raise from_user_exception(exc, f"importing {where}") from None


def _rules_in(module: ModuleType) -> list[tuple[str, Rule]]:
    modules = [module]
    if hasattr(module, "__path__"):
        modules += [importlib.import_module(f"{module.__name__}.{info.name}")
                    for info in sorted(pkgutil.iter_modules(module.__path__), key=lambda m: m.name)]
    found = []
    for m in modules:
        rule = getattr(m, "RULE", None)
        if isinstance(rule, Rule):
            if not rule.id:
                raise AuditError(f"{m.__name__}: its RULE has no id")
            found.append((rule.id, rule))
    return found


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
