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
from .load import UserSetup, call_user
from .probe.run import ProbeOptions, run_probe
from .probe.state import copy_model


class _Transformed:
    """A loader whose batches pass through `transform`; re-iterable like the loader it wraps."""

    def __init__(self, loader, transform):
        self.loader, self.transform = loader, transform

    def __iter__(self):
        return (self.transform(b) for b in self.loader)


def _variant(setup: UserSetup, plan: FixPlan, optimizer) -> tuple[UserSetup, object]:
    model = copy_model(setup.model)
    if plan.model_edit is not None:
        with torch.no_grad():
            plan.model_edit(model)

    def make_optimizer(params):
        params = list(params)
        if optimizer is not None:  # the caller's instance: same class and hyper-parameters, fresh state
            opt = type(optimizer)(params, **{k: v for k, v in optimizer.defaults.items()})
        elif setup.make_optimizer is not None:
            opt = call_user(setup.make_optimizer, params, what=f"calling make_optimizer() in {setup.model_file}")
        else:
            opt = torch.optim.AdamW(params, lr=1e-3)
        if plan.add_missing_params:
            have = {id(p) for g in opt.param_groups for p in g["params"]}
            missing = [p for p in params if id(p) not in have and p.requires_grad]
            if missing:
                opt.add_param_group({"params": missing})
        if plan.lr is not None:
            for group in opt.param_groups:
                group["lr"] = plan.lr
        return opt

    loader = setup.train_loader if plan.batch_transform is None else _Transformed(setup.train_loader,
                                                                                  plan.batch_transform)
    return replace(setup, model=model, make_optimizer=make_optimizer, train_loader=loader, val_loader=None), None


def verify_fixes(setup: UserSetup, evidence: Evidence, findings: list[Finding], rules: dict[str, Rule],
                 thresholds: dict, options: ProbeOptions, optimizer=None) -> float:
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
            variant, _ = _variant(setup, plan, optimizer)
            after_ev = run_probe(variant, replace(options, checks=rule.needs_checks,
                                                               clip_grad_norm=plan.clip_grad_norm))
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
