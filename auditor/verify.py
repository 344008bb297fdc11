"""Step 4b of the data flow: proof that a fix works. For each finding whose rule plans a mechanical fix,
apply it to copies (model, optimizer, batches), re-run the probe with the same seed and batches, and record
the rule's metric before and after. The user's objects are never touched."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .causes import LR_HIGH, LR_LOW
from .engine import Finding, FixPlan, Rule, run_rules
from .errors import AuditError
from .evidence import Evidence, fmt, learnt_well, pct
from .interrupt import Stopped
from .load import UserSetup
from .probe.optim import copy_optimizer, copy_scheduler, unwrap
from .probe.run import ProbeOptions, run_probe
from .probe.snapshot import Snapshot
from .probe.state import copy_model
from .progress import Progress


class _Transformed:
    """A loader whose batches pass through `transform`; re-iterable like the loader it wraps."""

    def __init__(self, loader, transform):
        self.loader, self.transform = loader, transform

    def __iter__(self):
        return (self.transform(b) for b in self.loader)


def _variant(setup: UserSetup, plan: FixPlan, optimizer, scheduler, in_place: bool):
    """The user's setup with the plan's model and data edits, on copies. The optimizer is built by the probe
    as for the original run (the caller's instance re-targeted at the edited copy keeps its groups, and the
    caller's scheduler follows it). In place, the model edit is the probe's to apply, on the model itself."""
    loader = setup.train_loader if plan.batch_transform is None else _Transformed(setup.train_loader,
                                                                                  plan.batch_transform)
    if in_place:
        return replace(setup, train_loader=loader, val_loader=None), optimizer, scheduler
    model = copy_model(setup.model)
    if plan.model_edit is not None:
        with torch.no_grad():
            plan.model_edit(model)
    opt = copy_optimizer(optimizer, setup.model, model) if optimizer is not None else None
    sched = copy_scheduler(scheduler, optimizer, opt) if scheduler is not None and opt is not None else None
    return replace(setup, model=model, train_loader=loader, val_loader=None), opt, sched


@dataclass
class Counterfactuals:
    """What each verified fix did to the other findings, for auditor/causes.py."""

    seconds: float = 0.0
    removed_by: dict[str, set[str]] = field(default_factory=dict)  # rule -> rules whose findings disappeared
    stayed_after: dict[str, set[str]] = field(default_factory=dict)  # rule -> rules judged again that stayed


def verify_fixes(setup: UserSetup, evidence: Evidence, findings: list[Finding], rules: dict[str, Rule],
                 thresholds: dict, options: ProbeOptions, optimizer=None, scheduler=None,
                 ignore=(), progress: Progress | None = None) -> Counterfactuals:
    """Fill `finding.verified` for every finding, and record which other findings each fix removed."""
    if not options.in_place:
        return _verify(setup, evidence, findings, rules, thresholds, options, optimizer, scheduler, ignore,
                       progress, None)
    # One snapshot for every fixed variant, each probed on the model itself from it: no copy on the device.
    snapshot = Snapshot(setup.model, unwrap(optimizer) if optimizer is not None else None)
    snapshot.release_optimizer_state()
    try:
        return _verify(setup, evidence, findings, rules, thresholds, options, optimizer, scheduler, ignore,
                       progress, snapshot)
    finally:
        snapshot.restore()


def _verify(setup, evidence, findings, rules, thresholds, options, optimizer, scheduler, ignore, progress,
            snapshot) -> Counterfactuals:
    started = time.perf_counter()
    active = {k: r for k, r in rules.items() if k not in set(ignore)}
    result = Counterfactuals()
    progress = progress or Progress()
    # Information is not a fault: nothing to fix, and a re-probe of its "fix" would make it a cause in the graph.
    plans = [(f, [] if f.severity == "info" else _as_list(rules[f.rule].plan_fix(evidence, f))) for f in findings]
    progress.phase("verifying fixes", sum(len(p) for _, p in plans))
    for f, (plan, *alternatives) in ((f, p or [None]) for f, p in plans):
        if plan is None:
            f.verified = _unfixable(f, rules)
            continue
        f.verified, after_ev, present = _try(plan, f, rules, active, thresholds, evidence, setup, options,
                                             optimizer, scheduler, snapshot, progress)
        if after_ev is not None:
            record(result, f, findings, rules, evidence, after_ev, present)
            f.after = after_ev  # for the report's before/after figure; not part of the JSON
        # Other fixes of the same finding, each proved on its own copy: what the user may prefer (one layer kept in
        # float32 rather than the whole model in bf16). The root causes are judged by the first.
        if alternatives:
            f.verified["alternatives"] = [_try(alt, f, rules, active, thresholds, evidence, setup, options, optimizer,
                                               scheduler, snapshot, progress)[0] for alt in alternatives]
    refute(findings, evidence)
    settle(findings, rules)
    result.seconds = time.perf_counter() - started
    return result


def _unfixable(f: Finding, rules: dict[str, Rule]) -> dict:
    return {"reason": "no mechanical fix: " + ("this finding is information" if f.severity == "info" else
                                               rules[f.rule].unverified_because)}


def _as_list(plan) -> list[FixPlan]:
    """A rule's plan_fix: None, one FixPlan, or several (the first is the fix the root causes are judged by)."""
    if plan is None:
        return []
    return [plan] if isinstance(plan, FixPlan) else [p for p in plan if p is not None]


def _try(plan: FixPlan, f: Finding, rules, active, thresholds, evidence, setup, options, optimizer, scheduler,
         snapshot, progress) -> tuple[dict, Evidence | None, set[str]]:
    """(the verified record, the re-probe's evidence, the rules that still fire there); evidence None when the
    fixed copy could not be probed."""
    rule = rules[f.rule]
    before = rule.measure(evidence, f)
    try:
        variant, opt, sched = _variant(setup, plan, optimizer, scheduler, snapshot is not None)
        fixed = replace(options, checks=rule.needs_checks, clip_grad_norm=_clip(plan, options), lr=plan.lr,
                        optimizer_settings=plan.optimizer_settings,
                        add_missing_params=plan.add_missing_params, dist=None, amp=plan.amp or options.amp,
                        scaler_init=plan.scaler_init if plan.scaler_init is not None else options.scaler_init,
                        float32_modules=plan.float32_modules or options.float32_modules,
                        scheduler_every=plan.scheduler_every, warmup=plan.warmup,
                        keep_partial=False, purpose=f"verifying the fix for {f.rule} ({plan.description})")
        after_ev = run_probe(variant, fixed, optimizer=opt, scheduler=sched, snapshot=snapshot,
                             edit=plan.model_edit if snapshot is not None else None)
        if after_ev.probe.partial_reason:  # a signal or --timeout stopped the re-probe: the audit stops too
            raise Stopped(after_ev.probe.partial_reason, after_ev.stop_code or 2)
    except AuditError as exc:
        return {"fix": plan.description, "reason": f"the fixed copy could not be probed: {exc}"}, None, {}
    finally:
        progress.update()
    verified, present = judge(rule, f, plan, before, evidence, after_ev, active, thresholds)
    return verified, after_ev, present


def judge(rule: Rule, f: Finding, plan: FixPlan, before, evidence: Evidence, after_ev: Evidence, active: dict,
          thresholds: dict) -> tuple[dict, dict[str, str]]:
    """The verified record of one fix from the evidence of its re-run, and the rules that still fire there with
    their worst severity; shared by the replay's re-probes and a script's re-runs."""
    after = rule.measure(after_ev, f)
    present: dict[str, str] = {}
    for g in run_rules(after_ev, active, thresholds, ()):
        if present.get(g.rule) in (None, "info"):
            present[g.rule] = g.severity
    # Clipping acts after the gradients are measured: the spikes stay, their effect goes. A finding that is only
    # information on the copy is gone.
    gone = None if plan.clip_grad_norm is not None else present.get(f.rule, "info") == "info"
    verified = {"fix": plan.description, **({"lr": plan.lr} if plan.lr is not None else {}),
                "metric": rule.metric_of(f), "before": _num(before), "after": _num(after),
                "resolved": gone, **_outcome(rule, before, after, gone, evidence, after_ev, learns=f.advice == LR_LOW)}
    return verified, present


def record(result: Counterfactuals, f: Finding, findings: list[Finding], rules: dict, evidence: Evidence,
           after_ev: Evidence, present: dict[str, str]) -> None:
    """Which other findings the fix removed (and which stayed), for the root causes: a warning or error that is
    absent or only information on the copy, information that is absent there."""
    judged = {g.rule for g in findings if g.rule != f.rule and _judgeable(rules[g.rule], after_ev)}
    kept = {g.rule for g in findings if g.rule in present and (g.severity == "info" or present[g.rule] != "info")}
    # A fix that blew up a loss that was finite ended its re-probe early: what it did not see there, it did not
    # remove. (Where the run blew up before the fix too, both runs are judged alike.)
    blew_up = not np.isfinite(after_ev.loss[:after_ev.probe.steps_run]).all() and \
        bool(np.isfinite(evidence.loss[:evidence.probe.steps_run]).all())
    # A fix that left training worse (or stopped it) removed what it removed by not training, and one that did
    # nothing for its own finding is no proof of its cause (a warm-up over half the probe thins out the steps that
    # overshoot at a rate too high throughout, and the overshoot's finding with them): no credit for either.
    proven = (f.verified or {}).get("outcome") in ("resolved", "improved")
    result.removed_by[f.rule] = judged - kept if proven and not blew_up else set()
    result.stayed_after[f.rule] = judged & kept


# A run "learns" where its loss ended under this fraction of what a model that ignores its input reaches (the
# label entropy, ln C when balanced; the targets' variance): pytorch/examples' MNIST net (Adadelta 1.0, 67% of
# fc1 dead) ends at 1% of ln 10; the rate-killed VGGs, whose lower rate does learn, end at ln 10.
LEARNT = 0.5


def refute(findings: list[Finding], evidence: Evidence) -> None:
    """Findings that say the rate is too high, on a run that learns, where every copy at a lower rate ended with a
    higher loss: their own counterfactual refutes the claim (an MLP at Adam 0.05 whose first step rewrites the
    weights; pytorch/examples' MNIST net with 67% of fc1 dead under Adadelta 1.0), so they are information, with
    the evidence, and the rate stays. Judged on every lower-rate copy of the audit, whichever finding tried it
    (a rise's tenth of the rate beside its warm-up): where one learnt more (units killed at 10x that rate, a
    full-batch run at SGD 16), the rate is too high, whatever another copy showed."""
    high = [f for f in findings if f.advice == LR_HIGH and f.severity != "info" and (f.verified or {}).get("lr")]
    rate = evidence.probe.lr
    lower = [v for f in findings for v in (f.verified or {}, *(f.verified or {}).get("alternatives", []))
             if v.get("lr") is not None and (f in high or (rate and v["lr"] < rate))]
    if not high or any(v.get("loss_before") is None or v.get("loss_after") is None or
                       v["loss_after"] <= v["loss_before"] * (1 + CHANGE) for v in lower):
        return
    learnt = learnt_well(evidence, LEARNT)
    if learnt is None:
        return
    for f in high:
        v = f.verified
        f.severity, f.advice = "info", None
        f.title = f.title.split(":")[0] + ", and training copes"
        f.diagnosis += (f" Yet the loss ended at {fmt(learnt[0])}, {pct(learnt[0] / learnt[1])} of {learnt[2]} "
                        f"({fmt(learnt[1])}), and on a copy {v['fix']} ended higher ({fmt(v['loss_after'])}): this "
                        "run learns at its rate, and a lower one learns less.")
        f.fix = ("Nothing to change for this run: the lower rate was tried on a copy and learnt less (below). If a "
                 "longer run turns unstable, lower the rate or warm it up then.")
        f.evidence.update(refuted=True, loss_end=learnt[0], loss_reference=learnt[1])


def settle(findings: list[Finding], rules: dict[str, Rule]) -> None:
    """Findings whose harm is what their fix prevents (Rule.harm_is_fixable), where that fix, on a copy, left the
    training loss where it was or higher: the harm is not there in these steps, so they are information
    (EfficientNet-B4 from scratch spiked 15x once; clipping ended at 5.97 against 5.64)."""
    for f in findings:
        v = f.verified or {}
        if f.severity == "info" or not getattr(rules.get(f.rule), "harm_is_fixable", False) or \
                v.get("outcome") not in ("no effect", "worse") or v.get("loss_before") is None:
            continue
        f.severity, f.advice = "info", None
        f.title = f.title.split(":")[0] + ", and training recovers"
        f.diagnosis += (f" Yet on a copy with the fix ({v['fix']}) the loss ended at {fmt(v['loss_after'])} against "
                        f"{fmt(v['loss_before'])}: they did no harm that the fix undoes in these steps.")
        f.fix = ("Nothing to change for this run (the fix was tried on a copy, below). If a longer run turns "
                 "unstable after such a step, apply it then.")
        f.evidence.update(refuted=True)


def _judgeable(rule: Rule, ev: Evidence) -> bool:
    return all(getattr(ev, name, None) for name in rule.reads)


# How each outcome reads, and its tone (good / flat / bad), in every report format and the terminal.
OUTCOMES = {"resolved": ("fix verified: the finding is gone", "good"),
            "improved": ("fix verified: it improved", "good"),
            "no effect": ("fix tried: no effect", "flat"),
            "worse": ("fix made it worse", "bad")}
# A consequence's own fix under a root whose fix is the only one (Finding.fix_moot): what it did on a copy is
# shown, not as a fix.
MOOT = ("tried all the same", "flat")

# A fix "changes" a number when it moves it by more than this fraction: the probe's own run-to-run noise on
# the healthy samples is under 2% for the same seed and batches (they are identical runs), so 10% is a margin.
CHANGE = 0.10


def _end_loss(ev: Evidence) -> float:
    tail = ev.loss[-10:]
    return float(np.median(tail)) if tail.size and np.isfinite(tail).all() else float("nan")


def _drop(ev: Evidence) -> float:
    """How much the training loss fell over the run, as a fraction of where it started (NaN unknown)."""
    head, end = ev.loss[:5], _end_loss(ev)
    start = float(np.median(head)) if head.size and np.isfinite(head).all() else float("nan")
    return (start - end) / start if start > 0 and np.isfinite(end) else float("nan")


def _outcome(rule: Rule, before, after, gone: bool | None, ev: Evidence, after_ev: Evidence,
             learns: bool = False) -> dict:
    """"resolved" (the finding is gone, training is no worse and, for a finding that says the rate is too low to
    learn (`learns`), where the original did not learn, the copy does), "improved" (the metric moved towards its
    goal by CHANGE or more), "worse" (the metric moved away, or the training loss ended CHANGE higher, turned
    non-finite, or stopped falling where it fell by CHANGE or more and ended no lower), else "no effect"."""
    loss0, loss1 = _end_loss(ev), _end_loss(after_ev)
    drop0, drop1 = _drop(ev), _drop(after_ev)
    out = {"loss_before": _num(loss0), "loss_after": _num(loss1)}
    higher = np.isfinite(loss0) and np.isfinite(loss1) and loss1 > loss0 * (1 + CHANGE) + 1e-6
    # A rate turned down to nothing removes every dynamics finding and ends near where it began: a fix that
    # stops training is no fix, even where the start was already about as low as the original's end.
    stalled = bool(drop0 >= CHANGE and drop1 < CHANGE / 4 and loss1 >= loss0 - 1e-6)
    if stalled and getattr(rule, "compares_loss", True):
        out["after_reason"] = "training stopped on the fixed copy: its loss ended where it began"
    loss_worse = (np.isfinite(loss0) and not np.isfinite(loss1)) or (getattr(rule, "compares_loss", True)
                                                                        and (higher or stalled))
    gain = _gain(rule.metric_goal, _num(before), _num(after))
    if _num(after) is None and _num(before) is not None:  # no metric at all for this finding: nothing to explain
        out["after_reason"] = ("the fixed copy's loss turned non-finite, so the metric is undefined"
                               if not np.isfinite(after_ev.loss).all() else
                               "the metric is undefined on the fixed copy (nothing it reads was measured there)")
    # A rate raised so that the model learns, gone from a copy that learns no more than the original, where neither
    # learnt (VGG-19 without BatchNorm at its recipe's rate and at 59x it: 2.30 -> 2.30 both): the rule's test passed,
    # its promise did not. Other fixes answer their own metric (gradients no longer flushed, weights no longer zero),
    # which a probe too short for the task to show learning does not make less true.
    flat = bool(learns and gone and drop0 < CHANGE and drop1 < CHANGE and loss1 >= loss0 * (1 - CHANGE))
    if flat and not loss_worse and "after_reason" not in out:
        out["after_reason"] = (f"the finding is gone on the copy, but training does not learn there either (the loss "
                               f"changed {pct(-drop0)} over the probe as it was, {pct(-drop1)} on the copy)")
    if loss_worse or (gain is not None and gain < -CHANGE):
        out["outcome"] = "worse"
    elif gone and not flat:
        out["outcome"] = "resolved"
    elif gain is not None and gain >= CHANGE:
        out["outcome"] = "improved"
    else:
        out["outcome"] = "no effect"
    return out


def _gain(goal, before: float | None, after: float | None) -> float | None:
    """How far the metric moved towards its goal, as a fraction of where it started (1 = all the way)."""
    if before is None or after is None:
        return None
    if goal == "lower":
        return (before - after) / abs(before) if before else None
    distance = abs(before - float(goal))
    return (distance - abs(after - float(goal))) / distance if distance else None


def _num(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _clip(plan: FixPlan, options: ProbeOptions) -> float | None:
    """The fix's clipping, else the run's own (a trainer's gradient_clip_val)."""
    return plan.clip_grad_norm if plan.clip_grad_norm is not None else options.clip_grad_norm


def verify_script(script, evidence: Evidence, findings: list[Finding], rules: dict[str, Rule], thresholds: dict,
                  ignore=(), steps: int = 100, stats_every: int = 13, seed: int = 0,
                  progress: Progress | None = None) -> Counterfactuals:
    """`audit run`: each mechanical fix proven on the script itself, re-run in a fresh process with the fix
    applied through the observer's hooks (auditor/probe/rerun.py), for the same steps and seed."""
    from .probe.rerun import loop_fix, rerun

    started = time.perf_counter()
    active = {k: r for k, r in rules.items() if k not in set(ignore)}
    result = Counterfactuals()
    progress = progress or Progress()
    # Information is not a fault: nothing to fix, and a re-probe of its "fix" would make it a cause in the graph.
    plans = [(f, [] if f.severity == "info" else _as_list(rules[f.rule].plan_fix(evidence, f))) for f in findings]
    progress.phase("verifying fixes on the script", sum(1 for _, p in plans if p))
    for f, plan in ((f, p[0] if p else None) for f, p in plans):
        if plan is None:
            f.verified = _unfixable(f, rules)
            continue
        fix, why = loop_fix(plan)
        if fix is None:
            f.verified = {"fix": plan.description, "reason": why}
            progress.update()
            continue
        rule = rules[f.rule]
        # The experiments too where another finding reads them: whether the fix removed it is then measured.
        experiments = rule.needs_checks or any(rules[g.rule].reads for g in findings if g.rule != f.rule)
        try:
            after_ev = rerun(script, fix, steps, stats_every, seed, experiments=experiments)
        except AuditError as exc:
            f.verified = {"fix": plan.description, "reason": f"the script could not be re-run with the fix: {exc}"}
            continue
        finally:
            progress.update()
        f.verified, present = judge(rule, f, plan, rule.measure(evidence, f), evidence, after_ev, active,
                                    thresholds)
        f.verified["how"] = "the script re-run in a fresh process, same steps and seed, with the fix"
        f.after = after_ev
        record(result, f, findings, rules, evidence, after_ev, present)
    refute(findings, evidence)
    settle(findings, rules)
    result.seconds = time.perf_counter() - started
    return result
