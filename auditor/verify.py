"""Step 4b of the data flow: proof that a fix works. For each finding whose rule plans a mechanical fix,
apply it to copies (model, optimizer, batches), re-run the probe with the same seed and batches, and record
the rule's metric before and after. The user's objects are never touched."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from .engine import Finding, FixPlan, Rule, run_rules
from .errors import AuditError
from .evidence import Evidence
from .load import UserSetup
from .probe.optim import copy_optimizer, copy_scheduler
from .probe.run import ProbeOptions, run_probe
from .probe.state import copy_model


class _Transformed:
    """A loader whose batches pass through `transform`; re-iterable like the loader it wraps."""

    def __init__(self, loader, transform):
        self.loader, self.transform = loader, transform

    def __iter__(self):
        return (self.transform(b) for b in self.loader)


def _variant(setup: UserSetup, plan: FixPlan, optimizer, scheduler):
    """The user's setup with the plan's model and data edits, on copies. The optimizer is built by the probe
    as for the original run (the caller's instance re-targeted at the edited copy keeps its groups, and the
    caller's scheduler follows it)."""
    model = copy_model(setup.model)
    if plan.model_edit is not None:
        with torch.no_grad():
            plan.model_edit(model)
    opt = copy_optimizer(optimizer, setup.model, model) if optimizer is not None else None
    sched = copy_scheduler(scheduler, optimizer, opt) if scheduler is not None and opt is not None else None
    loader = setup.train_loader if plan.batch_transform is None else _Transformed(setup.train_loader,
                                                                                  plan.batch_transform)
    return replace(setup, model=model, train_loader=loader, val_loader=None), opt, sched


def verify_fixes(setup: UserSetup, evidence: Evidence, findings: list[Finding], rules: dict[str, Rule],
                 thresholds: dict, options: ProbeOptions, optimizer=None, scheduler=None) -> float:
    """Fill `finding.verified` for every finding; return the seconds it took."""
    started = time.perf_counter()
    for f in findings:
        rule = rules[f.rule]
        plan = rule.plan_fix(evidence, f)
        if plan is None:
            f.verified = {"reason": "no mechanical fix: " + (
                "this finding is information" if f.severity == "info" else
                "the fix depends on the model's intent, so the auditor does not apply one")}
            continue
        before = rule.measure(evidence, f)
        try:
            variant, opt, sched = _variant(setup, plan, optimizer, scheduler)
            after_ev = run_probe(variant, replace(options, checks=rule.needs_checks, clip_grad_norm=plan.clip_grad_norm,
                                                  lr=plan.lr, add_missing_params=plan.add_missing_params),
                                 optimizer=opt, scheduler=sched)
        except AuditError as exc:
            f.verified = {"fix": plan.description, "reason": f"the fixed copy could not be probed: {exc}"}
            continue
        after = rule.measure(after_ev, f)
        still = [g for g in run_rules(after_ev, {rule.id: rule}, thresholds, ()) if g.severity == f.severity]
        f.verified = {"fix": plan.description, "metric": rule.metric, "before": _num(before), "after": _num(after),
                      # Clipping acts after the gradients are measured: the spikes stay, their effect goes.
                      "resolved": None if plan.clip_grad_norm is not None else not still}
        f.after = after_ev  # for the report's before/after figure; not part of the JSON
    return time.perf_counter() - started


def _num(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None
