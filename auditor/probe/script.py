"""The script driver: run the user's own training script unchanged, as `__main__`, and observe its first steps.

As `coverage run` does: the script gets its own sys.argv, sys.path[0] is its folder, the working directory
is left alone. The LoopWatch (auditor/probe/loopwatch.py) sees the loop through PyTorch's global hooks and
stops the script, with an exception its `except Exception:` cannot swallow, once `steps` optimizer steps
are seen. What it measured becomes Evidence, read by the same rules as the replay's.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import AuditError, NeverStepped
from ..evidence import Evidence, ProbeInfo
from . import checks, lossspy, optim
from .amp import scaler_settings
from .devicelog import stacked
from .loopwatch import LoopFix, LoopWatch, StopScript
from .observer import peak_lr
from .samplers import SamplerWatch
from .sideeffects import SideEffects
from .state import seed_everything
from .structure import dropout_rates, structure_hash
from .warnlog import WarningLog


@dataclass
class Script:
    """What to run: a file, or a module with `-m`, and its arguments."""

    target: str
    args: list[str] = field(default_factory=list)
    module: bool = False
    optimizer: int = 0  # the optimizer observed, in the order of first steps: one audit per player of a GAN

    @property
    def name(self) -> str:
        return f"-m {self.target}" if self.module else self.target

    @property
    def command(self) -> str:
        return " ".join([self.name, *self.args])

    def check(self) -> None:
        """A missing script or a syntax error: one clear line, before anything runs."""
        if self.module:
            try:
                spec = importlib.util.find_spec(self.target)
            except (ImportError, ValueError) as exc:
                raise AuditError(f"-m {self.target}: {exc}") from None
            if spec is None:
                raise AuditError(f"-m {self.target}: no module named {self.target!r} on sys.path")
            return
        path = Path(self.target)
        if not path.exists():
            raise AuditError(f"{path}: no such file; pass your training script (audit run train.py ARGS)")
        if path.is_dir() or path.suffix != ".py":
            raise AuditError(f"{path}: expected a Python script (.py); for a package use audit run -m package.module")
        try:
            compile(path.read_bytes(), str(path), "exec")
        except SyntaxError as exc:
            raise AuditError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None


@dataclass
class Ending:
    """How the script's run ended, as the report tells it."""

    kind: str  # stopped | ended | exited | crashed | nan | no-step
    message: str = ""


def run_script(script: Script, steps: int, stats_every: int, seed: int, fix: LoopFix | None = None,
               experiments: bool = True, rerun_writes: bool = False) -> Evidence:
    """`fix`: a mechanical fix applied through the observer's hooks (auditor/probe/rerun.py). `experiments`:
    overfit one batch and zeroed inputs on the script's own first batches (auditor/probe/script_checks.py).
    `rerun_writes`: the user allows re-runs of a script that writes files (auditor/probe/sideeffects.py)."""
    if steps < 1:
        raise AuditError(f"--steps must be at least 1, got {steps}")
    script.check()
    started = time.perf_counter()
    seed_everything(seed)  # before the script runs; a script that seeds itself wins, as in its own job
    watch = LoopWatch(steps, stats_every, fix=fix, experiments=experiments, optimizer=script.optimizer)
    effects = SideEffects()
    ending = _run(script, watch, effects)
    if watch.step == 0 and watch.record.skipped:
        raise AuditError(f"{script.name}: the GradScaler skipped every one of its {len(watch.record.skipped)} steps "
                         "for inf/NaN gradients, so no update was ever applied: fp16 overflows from the first step "
                         "(train in bfloat16, or find the layer whose fp16 output passes 65504)")
    if watch.step == 0 and script.optimizer and len(watch.record.players) <= script.optimizer:
        raise AuditError(f"{script.name}: optimizer {script.optimizer + 1} never stepped in this run (the script "
                         f"stepped {len(watch.record.players)})")
    if watch.step == 0:
        raise NeverStepped(_never_stepped(script, ending))
    evidence = _evidence(script, watch, ending, seed, started)
    # Why the script may not be re-run (for fixes, the LR range test, a GAN's other players), or None.
    evidence.loop["not_rerun"] = None if rerun_writes and not effects.stdin else effects.why_not_rerun()
    if experiments and not evidence.probe.partial_reason:
        from . import script_checks

        script_checks.run(watch, evidence)
        script_checks.range_test(script, watch, evidence, stats_every, seed)
        evidence.probe.seconds = time.perf_counter() - started
    return evidence


def _run(script: Script, watch: LoopWatch, effects: SideEffects) -> Ending:
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    try:
        sys.argv = [script.target, *script.args]
        sys.path.insert(0, str(Path.cwd() if script.module else Path(script.target).resolve().parent))
        # The script's warnings are evidence, as the replay's (auditor/probe/warnlog.py), kept off stderr.
        with watch, SamplerWatch() as samplers, effects, WarningLog(clock=lambda: watch.step) as warned:
            watch.samplers, watch.warned = samplers, warned
            try:
                if script.module:
                    runpy.run_module(script.target, run_name="__main__", alter_sys=True)
                else:
                    runpy.run_path(script.target, run_name="__main__")
            except StopScript as stop:
                return Ending("nan" if watch.nan_stopped else "no-step" if watch.no_step_stopped else "stopped",
                              str(stop))
            except SystemExit as exc:
                return Ending("exited", f"the script called sys.exit({exc.code!r})")
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # the user's code failed: reported, not re-raised
                return Ending("crashed", _last_line(exc, script))
        return Ending("ended")
    finally:
        sys.argv[:] = saved_argv
        sys.path[:] = saved_path


def _last_line(exc: BaseException, script: Script) -> str:
    """The exception and the deepest line of the user's own code it passed through."""
    where = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if "site-packages" not in frame.filename and "/auditor/" not in frame.filename and \
                not frame.filename.startswith("<frozen"):
            where = f"{frame.filename}:{frame.lineno}"
    text = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return f"{where}: {text}" if where else text


def _never_stepped(script: Script, ending: Ending) -> str:
    if ending.kind == "crashed":
        return f"{script.name} failed before its first optimizer step: {ending.message}"
    if ending.kind == "exited":
        return f"{script.name} exited before its first optimizer step ({ending.message}); check its arguments"
    ran = f"ran {ending.message}, so it was stopped there" if ending.kind == "no-step" else \
        "ran to its end without an optimizer step"
    return (f"{script.name} {ran}: audit run observes training through optimizer.step() (a loop that updates "
            "tensors by hand, as `p.data.add_(p.grad, alpha=-lr)`, has no step to observe; torch.optim.SGD(params, "
            "lr=lr).step() is the same update and can be)")


def _evidence(script: Script, watch: LoopWatch, ending: Ending, seed: int, started: float) -> Evidence:
    n = watch.step
    model, opt = watch.model, watch.opt
    host = watch.log.read_back()
    call = watch.spy.call
    expected, why = lossspy.expected_initial_loss([call]) if call is not None else (None, "unknown for this loss")
    initial = _initial_loss(call, watch.first_loss)
    lrs = np.array(watch.record.lrs, dtype=float) if watch.record.lrs else None
    info = ProbeInfo(
        steps=watch.steps, steps_run=n, device=str(next(iter(model.parameters())).device),
        loss_fn=call.kind if call is not None else "the script's own loss",
        loss_fn_reason=(f"seen in the script: {call.describe()}" if call is not None else
                        "the tensor the script called backward() on"),
        loss_fn_default=False, optimizer=watch.described, optimizer_default=False, seed=seed,
        parameters=sum(p.numel() for p in model.parameters()), stats_every=watch.stats_every,
        initial_loss=initial, expected_initial_loss=expected, expected_initial_loss_reason=why,
        num_classes=call.num_classes if call is not None else None,
        batch_size=_batch_size(watch.first_args), lr=peak_lr(lrs), scheduled_lr=optim.scheduled_peak(opt),
        model_file=script.name, data_file=script.command, not_stepped=optim.not_stepped(opt, model),
        weights=optim.weight_precision(opt),
        structure_hash=structure_hash(model))
    if ending.kind == "crashed":
        info.partial_reason = f"the script failed after {n} optimizer steps: {ending.message}"
    elif ending.kind == "exited":
        info.notes.append(f"{ending.message} after {n} optimizer steps")
    elif ending.kind == "ended":
        info.notes.append(f"the script ended after {n} optimizer steps")
    elif ending.kind == "nan":
        info.notes.append(ending.message)
    if watch.tracer is None and getattr(model, "_orig_mod", None) is not None:
        info.notes.append("a torch.compile'd model: its activations are not traced (the tracer would make it "
                          "recompile); gradients, updates and the loop are measured as usual")
    players = watch.record.players
    if len(players) > 1:
        others = ", ".join(f"{name} ({count} steps)" for name, count in watch.record.other_optimizers.items())
        info.notes.append(f"the script steps {len(players)} optimizers; this report is of optimizer "
                          f"{script.optimizer + 1} in the order of their first steps, {type(opt).__name__} over "
                          f"{type(model).__name__} (also seen: {others}), each audited in a run of its own")
    evidence = watch.observer.evidence(info, host, n)
    evidence.initial_losses = [initial] if initial is not None else []
    # The curve's own first value: the observed optimizer's loss before its first update, as backward saw it.
    info.start_loss = float(evidence.loss[0]) if evidence.loss.size and np.isfinite(evidence.loss[0]) else None
    evidence.batch_fingerprints = [np.asarray(a, dtype=float) for a in host.get("batch_fp", ([], []))[1]]
    evidence.labels = [(s_, a.astype(int)) for s_, a in zip(*host.get("labels", ([], [])), strict=True)]
    evidence.targets = [np.asarray(a, dtype=float) for a in host.get("targets", ([], []))[1]]
    if call is not None:  # output_form reads the kinds it knows (classes, or BCE's binary logits), else None
        evidence.output_form = checks.output_form([call.input], call.kind, call.class_dim, call.squashed_by)
    if call is not None:
        evidence.loss_call = call.summary()
    evidence.lrs = lrs
    evidence.samplers = watch.samplers.records() if watch.samplers is not None else []
    evidence.dropouts = dropout_rates(model)
    evidence.warnings = watch.warned.records if watch.warned is not None else []
    evidence.loop = _loop(watch, host, n)
    keys = evidence.loop["sample_keys"]
    evidence.epoch_steps = checks.first_pass_length(keys) if keys else None
    evidence.ranks = watch.ranks
    evidence.amp = _amp(watch, host, n, evidence)
    info.amp = evidence.amp["mode"] if evidence.amp else None
    info.seconds = time.perf_counter() - started
    if ending.kind == "crashed":
        evidence.stop_code = 2
    return evidence


def _initial_loss(call, first_loss) -> float | None:
    """The loss at step 0 per element: recomputed from the loss call the spy saw, which is what the user's
    loss function returned before any division for gradient accumulation or scaling by a GradScaler."""
    if call is not None and call.target is not None:
        func = {kind: f for f, kind in lossspy.KINDS.items()}[call.kind]
        try:
            with torch.no_grad():
                value = float(func(call.input, call.target, **call.options))
            return lossspy.per_element(call, value)
        except Exception:  # an option the functional form does not take: the backward'd loss instead
            pass
    return float(first_loss) if first_loss is not None else None


def _read_norms(clips: list[dict]) -> list[dict]:
    """The clip records with each gradient norm the clipping measured as a number: one read-back for them all."""
    norms = [c["norm"] for c in clips if isinstance(c.get("norm"), torch.Tensor)]
    if not norms:
        return clips
    try:
        values = iter(torch.stack([t.float().to(norms[0].device) for t in norms]).cpu().tolist())
    except RuntimeError:  # norms on several devices that cannot meet on one
        values = iter(float(t) for t in norms)
    return [{**c, "norm": next(values)} if isinstance(c.get("norm"), torch.Tensor) else c for c in clips]


def _loop(watch: LoopWatch, host, n: int) -> dict:
    """The loop's own facts for the loop rules, as plain numbers."""
    rec = watch.record
    model_id = id(watch.model)
    return {
        "backwards": rec.backwards[:n],
        "grads_none_at_step": rec.none_at_step,
        "grads_unreached_at_step": rec.unreached_at_step,
        "carried_grads": [s for s in rec.carried if s < n],
        "carry_checked": rec.checked,
        "forwards": [{"step": f.step, "model": f.ident == model_id, "module": f.module, "training": f.training,
                      "grad": f.grad, "sensitive": f.sensitive, "sensitive_training": f.sensitive_training}
                     for f in rec.forwards],
        "clips": _read_norms(rec.clips),
        "scaler": rec.scaler,
        "stale_optimizer": rec.stale_optimizer,
        "loader_draws": rec.loader_draws,
        "no_loss": [s for s in rec.no_loss if s < n],
        "same_input_object": rec.same_input_object,
        "discarded": rec.discarded,
        "discarded_at": rec.discarded_at,
        "lambda_schedules": optim.lambda_factors(watch.lambda_schedules, watch.opt, n) if watch.opt is not None
        else [],
        "model": type(watch.model).__name__,
        # Which mode-dependent modules the model holds, so a diagnosis names only those it has.
        "mode_modules": _mode_modules(watch.model),
        "other_optimizers": dict(rec.other_optimizers),
        "optimizers": list(rec.players),
        "optimizer_index": watch.player,
        "sample_keys": _sample_keys(host, model_id, n),
    }


def _sample_keys(host, model_id: int, n: int) -> list[list[tuple]] | None:
    """Each step's sample keys (auditor/probe/checks.keys_of) for the model's first forward of the step."""
    steps, sums = host.get(f"sample_sums:{model_id}", ([], []))
    if not steps:
        return None
    by_step = dict(zip(steps, sums, strict=True))
    return [checks.keys_of(by_step[i]) if i in by_step else [] for i in range(n)]


def _amp(watch: LoopWatch, host, n: int, evidence: Evidence) -> dict | None:
    """The script's own autocast and GradScaler, as the AMP rules read them. A step the scaler skips never reaches
    optimizer.step(), so only the scale's fall shows it here."""
    mode = watch.record.autocast
    if not mode:
        return None
    scaler = watch._scalers[0] if watch._scalers else None
    scales = stacked(host.get("amp_scale"), n, 1)[:, 0] if scaler is not None else np.full(n, np.nan)
    return {"mode": mode, "scaler": scaler_settings(scaler) if scaler is not None and scaler.is_enabled() else None,
            "scales": scales, "skipped": sorted({s for s in watch.record.skipped if s < n}), "precision": None,
            "skipped_iterations": len(watch.record.skipped)}


def _mode_modules(model) -> list[str]:
    dropout, norm = torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._BatchNorm
    kinds = {"dropout" if isinstance(m, dropout) else "BatchNorm" for m in model.modules()
             if isinstance(m, dropout | norm)}
    return sorted(kinds, key=["dropout", "BatchNorm"].index)


def _batch_size(args) -> int | None:
    for a in args or ():
        if isinstance(a, torch.Tensor) and a.ndim:
            return int(a.shape[0])
    return None
