"""The Python API: `auditor.audit(model, loader)` for a pre-flight check in your own training script."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from torch import nn

from . import __version__, interrupt
from .causes import link
from .engine import load_rules, resolve_thresholds, run_rules
from .errors import AuditError
from .interrupt import Stopped
from .load import UserSetup
from .probe import snapshot
from .probe.loopwatch import LoopFix
from .probe.run import DEFAULT_STATS_EVERY, DEFAULT_STEPS, ProbeOptions, mark_partial, run_probe
from .probe.state import materialise_lazy
from .progress import Progress, as_progress
from .report import Report
from .verify import Counterfactuals
from .verify import verify_fixes as verify


def audit_setup(setup: UserSetup, *, steps: int = DEFAULT_STEPS, stats_every: int = DEFAULT_STATS_EVERY,
                seed: int = 0, device: str | None = None,
                optimizer=None, scheduler=None, ignore: Iterable[str] = (), thresholds: dict | None = None,
                progress: Progress | Callable[[int], None] | None = None, verify_fixes: bool = True,
                plugins: Iterable[str] = (), clip_grad_norm: float | None = None,
                keep_partial: bool = False, dist=None, in_place: bool | None = None, amp: str | None = None) -> Report:
    if optimizer is None and setup.optimizer is not None:  # model.py's own instances, as the API's
        optimizer, scheduler = setup.optimizer, scheduler if scheduler is not None else setup.scheduler
    elif optimizer is None and setup.scheduler is not None:
        raise AuditError(f"{setup.model_file}: `scheduler` needs the optimizer it was built on: define `optimizer` "
                         "there too")
    rules = load_rules(plugins)
    resolved = resolve_thresholds(rules, thresholds or {})
    unknown = set(ignore) - set(rules)
    if unknown:  # before the probe, so a typo costs nothing
        raise AuditError(f"--ignore names unknown rule(s): {', '.join(sorted(unknown))}; `audit rules` lists them")
    if dist is not None:  # the rank's own device; re-probes for verification run there too, unwrapped
        device = str(dist.device)
    lazy_note = materialise_lazy(setup)
    if dist is None:
        in_place, in_place_note = snapshot.choose(setup.model, device, in_place)
    else:
        in_place_note = None  # asked for under torchrun: run_probe says why it cannot
    options = ProbeOptions(steps=steps, seed=seed, device=device, stats_every=stats_every,
                           clip_grad_norm=clip_grad_norm, keep_partial=keep_partial, dist=dist,
                           in_place=bool(in_place), amp=amp)
    progress = as_progress(progress)
    evidence = run_probe(setup, options, optimizer=optimizer, progress=progress, scheduler=scheduler)
    if dist is not None and dist.main:
        try:
            interrupt.undefer()  # rank 0 verifies alone: a signal now stops it where it lands
        except Stopped as stop:
            mark_partial(evidence, stop.reason, stop.exit_code)
    if in_place_note:
        evidence.probe.notes.append(in_place_note)
    if lazy_note:
        evidence.probe.notes.append(lazy_note)
    findings = run_rules(evidence, rules, resolved, ignore)
    report = Report(findings, evidence, __version__, [r for r in rules if r not in set(ignore)])
    report.catalogue = rules
    report.settings = {"mode": "replay", "steps": steps, "stats_every": stats_every, "seed": seed, "device": device,
                       "verify_fixes": verify_fixes, "in_place": options.in_place, "amp": evidence.probe.amp,
                       "ignore": sorted(set(ignore)),
                       "thresholds": {k: dict(v) for k, v in (thresholds or {}).items()}}
    counter = Counterfactuals()
    if verify_fixes and not evidence.probe.partial_reason and (dist is None or dist.main):
        try:
            counter = verify(setup, evidence, findings, rules, resolved, options, optimizer, scheduler, ignore,
                             progress)
            report.verify_seconds = counter.seconds
        except Stopped as stop:
            mark_partial(evidence, stop.reason, stop.exit_code)
            counter = Counterfactuals()
    report.root_causes = link(findings, counter.removed_by, counter.stayed_after)
    report.order_by_cause()
    return report


def audit_script(script, *, steps: int = DEFAULT_STEPS, stats_every: int = DEFAULT_STATS_EVERY, seed: int = 0,
                 ignore: Iterable[str] = (), thresholds: dict | None = None, plugins: Iterable[str] = (),
                 progress: Progress | Callable[[int], None] | None = None, verify_fixes: bool = True,
                 rerun_writes: bool = False) -> Report:
    """`audit run train.py ARGS`: the script's own loop, observed for its first `steps` optimizer steps
    (auditor/probe/script.py), judged by the same rules as a replay. `script` is an auditor.probe.script.Script.
    A script that wrote files in its first run is not run again (to prove fixes, for the LR range test) unless
    `rerun_writes`; one that read stdin never is.

    A script that steps several optimizers (a GAN) is audited once per optimizer, each in a run of its own: the
    report returned is of the first to step, and `report.players` holds one report per optimizer, itself first."""
    from dataclasses import replace

    from .probe.rerun import rerun
    from .probe.script import run_script

    rules = load_rules(plugins)
    resolved = resolve_thresholds(rules, thresholds or {})
    unknown = set(ignore) - set(rules)
    if unknown:
        raise AuditError(f"--ignore names unknown rule(s): {', '.join(sorted(unknown))}; `audit rules` lists them")
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    # A re-run would join the job's process group as a rank of its own and wait for the others forever.
    verify_fixes = verify_fixes and not distributed
    options = dict(steps=steps, stats_every=stats_every, seed=seed, ignore=ignore, thresholds=thresholds,
                   verify_fixes=verify_fixes, progress=progress)
    evidence = run_script(script, steps, stats_every, seed, rerun_writes=rerun_writes)
    blocked = evidence.loop.get("not_rerun")
    if blocked and verify_fixes:
        evidence.probe.notes.append(f"the fixes were not re-run on the script: {blocked}")
    options["verify_fixes"] = verify_fixes and not blocked
    report = _script_report(script, evidence, rules, resolved, **options)
    report.players = [report]
    players = len(evidence.loop.get("optimizers", []))
    if (distributed or blocked) and players > 1:
        why = "under torchrun: run `audit run` on one process for the others" if distributed else \
            f"the others need a run each, and {blocked}"
        evidence.probe.notes.append(f"only the first of the script's {players} optimizers is audited {why}")
        players = 1
    for index in range(1, players):
        player = replace(script, optimizer=index)
        # A fresh process: the first run's module state must not leak into the next player's run.
        other = rerun(player, LoopFix(), steps, stats_every, seed, experiments=True)
        report.players.append(_script_report(player, other, rules, resolved, **options))
    return report


def _script_report(script, evidence, rules, resolved, *, steps, stats_every, seed, ignore, thresholds,
                   verify_fixes, progress) -> Report:
    findings = run_rules(evidence, rules, resolved, ignore)
    report = Report(findings, evidence, __version__, [r for r in rules if r not in set(ignore)])
    report.catalogue = rules
    loop = evidence.loop or {}
    report.settings = {"mode": "script", "script": script.name, "args": list(script.args), "steps": steps,
                       "stats_every": stats_every, "seed": seed, "device": evidence.probe.device,
                       "verify_fixes": verify_fixes, "ignore": sorted(set(ignore)),
                       "thresholds": {k: dict(v) for k, v in (thresholds or {}).items()},
                       "optimizer": {"index": script.optimizer, "of": len(loop.get("optimizers", [])),
                                     "optimizer": evidence.probe.optimizer.split("(")[0], "model": loop.get("model")}}
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        evidence.probe.notes.append("fixes are not re-run under torchrun: run `audit run` on one process to verify "
                                    "them")
    counter = Counterfactuals()
    if verify_fixes and not evidence.probe.partial_reason:
        from .verify import verify_script

        counter = verify_script(script, evidence, findings, rules, resolved, ignore, steps, stats_every, seed,
                                as_progress(progress))
        report.verify_seconds = counter.seconds
    report.root_causes = link(findings, counter.removed_by, counter.stayed_after)
    report.order_by_cause()
    return report


def audit(model: nn.Module, loader: Iterable, *, loss_fn: Callable | None = None, optimizer=None, scheduler=None,
          make_optimizer: Callable | None = None, training_step: Callable | None = None,
          val_loader: Iterable | None = None, steps: int = DEFAULT_STEPS, stats_every: int = DEFAULT_STATS_EVERY,
          seed: int = 0,
          device: str | None = None, ignore: Iterable[str] = (), thresholds: dict | None = None,
          verify_fixes: bool = True, plugins: Iterable[str] = (), in_place: bool | None = None,
          amp: str | None = None, make_grad_scaler: Callable | None = None) -> Report:
    """Probe `steps` training steps on a copy of `model` and return a Report.

    `optimizer` may be your own optimizer instance, bare or as a trainer wraps it (accelerate's
    AcceleratedOptimizer, Lightning's LightningOptimizer): the probe trains a copy of it (same class, groups,
    settings and state) over a copy of the model. `scheduler`, an LR scheduler built on that optimizer, is
    copied too and stepped after every probe step. Your model, optimizer, scheduler and the random state of
    python, numpy and torch (CPU and CUDA) are left exactly as they were. `thresholds` overrides rule thresholds:
    `{"update-ratio": {"high": -1.5}}`. `verify_fixes` re-runs the probe with each mechanical fix applied
    to copies and records the effect in `finding.verified`. `plugins`: modules or paths of your own rules,
    loaded beside the built-ins (installed packages exposing the entry-point group `auditor.rules` always are).
    `in_place`: True trains `model` (and `optimizer`) themselves instead of copies, from a snapshot in host
    memory, and restores them bit for bit however the audit ends; False always copies; None (the default)
    goes in place when copies would not fit the device's free memory. `amp`: "bf16" or "fp16" runs the probe
    under torch.autocast, fp16 through a GradScaler (`make_grad_scaler()` returns your own, or None for none).
    """
    if not isinstance(model, nn.Module):
        raise AuditError(f"audit() needs an nn.Module, got {type(model).__name__}")
    setup = UserSetup(model=model, train_loader=loader, val_loader=val_loader, loss_fn=loss_fn,
                      make_optimizer=make_optimizer, training_step=training_step, make_grad_scaler=make_grad_scaler)
    return audit_setup(setup, steps=steps, stats_every=stats_every, seed=seed, device=device, optimizer=optimizer,
                       scheduler=scheduler, ignore=ignore, thresholds=thresholds, verify_fixes=verify_fixes,
                       plugins=plugins, in_place=in_place, amp=amp)
