"""The auditor's own experiments on a user's script: overfit one batch, the loss with the inputs zeroed (at
initialisation and after the steps seen), batch mixing and a causal leak (where the model takes one tensor),
and under fp16 autocast the precision check, run on the batches the script itself fed its model.

The script's model is copied before its first forward; for its first HELD_STEPS steps the observer keeps
each step's model inputs, its output and every functional loss call. Only where the loss was called on the
model's own output (`loss_fn(model(x), y)`, however the loss function is written) can the experiment
recompute the script's loss on a copy; otherwise (a loss computed inside the model's forward, the output
reshaped first) the experiments are skipped and the report says why.

The LR range test is the script itself, re-run in a fresh process with its rates swept (as a fix is proven):
its own loss, optimizer and schedule's group ratios, on fresh batches from its own loader, never a few kept
batches cycled (a memorised batch would flatter the higher rates).
"""

from __future__ import annotations

import math

import torch

from ..evidence import Evidence
from . import amp as mixed
from . import checks
from .batches import LossComputer
from .lossspy import KINDS
from .state import copy_model

HELD_STEPS = 4
_FUNCTIONS = {kind: fn for fn, kind in KINDS.items()}


def held_batches(watch) -> tuple[list, dict | None, str | None, str, list[int]]:
    """(batches, the loss's options, its kind, why none, the step of each batch) from what the observer kept."""
    out, options, kind, steps = [], None, None, []
    for step in sorted(watch.held):
        output = watch.outputs.get(step)
        if not isinstance(output, torch.Tensor):
            continue
        call = next((c for s, c, xid in watch.spy.calls if s == step and xid == id(output)), None)
        if call is None:
            continue
        if kind is None:
            kind, options = call.kind, call.options
        elif call.kind != kind:
            continue
        args, kwargs = watch.held[step]
        single = len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor)
        out.append((args[0], call.target) if single else (tuple(args), dict(kwargs), call.target))
        steps.append(step)
    if not out:
        return [], None, None, ("the script's loss is not a functional loss called on its model's output (a loss "
                                "computed inside forward, or an output reshaped first), so the experiments cannot "
                                "recompute it"), []
    return out, options, kind, "", steps


def _plain_batches(watch) -> list[tuple]:
    """(inputs, targets) of the held steps where the model took one tensor, whatever the loss then did with its
    output: the targets of that step's loss call, in the inputs' shape where they hold as many elements (the
    flattened next-token targets of `F.cross_entropy(logits.view(-1, V), y.view(-1))`)."""
    out = []
    for step in sorted(watch.held):
        args, kwargs = watch.held[step]
        if len(args) != 1 or kwargs or not isinstance(args[0], torch.Tensor):
            continue
        x = args[0]
        call = next((c for s, c, _ in watch.spy.calls if s == step and c.target is not None), None)
        y = call.target if call is not None else None
        if isinstance(y, torch.Tensor) and y.shape != x.shape and y.numel() == x.numel():
            y = y.reshape(x.shape)
        out.append((x, y))
    return out


def run(watch, evidence: Evidence) -> None:
    if watch.initial is None:
        evidence.probe.notes.append("the experiments did not run: no model with trainable parameters was called "
                                    "before the first step")
        return
    if not watch.initial_is_model():
        evidence.probe.notes.append(f"the experiments did not run: the first model the script called "
                                    f"({type(watch.initial).__name__}) is not the one this optimizer trains")
        return
    def attempt(name, run):
        try:
            return run()
        except Exception as exc:  # one experiment the model cannot take costs its rule, not the audit
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            evidence.probe.notes.append(f"the {name} experiment could not run on this script's model: {first}")
            return None

    # Batch mixing and a causal leak read the model alone: they need its inputs, not the script's loss.
    plain = _plain_batches(watch)
    if plain:
        forward = LossComputer(None, None, "the script", "the script")  # its forward(m, x) is m(x)
        evidence.batch_mixing = attempt("batch-mixing",
                                        lambda: checks.batch_mixing(copy_model(watch.initial), plain[0], forward))
        evidence.causal_leak = attempt("causal-leak",
                                       lambda: checks.causal_leak(copy_model(watch.initial), plain[0]))
        evidence.label_signal = attempt("labels-from-inputs",
                                        lambda: checks.inputs_signal(plain, evidence.probe.loss_fn))
    evidence.input_stats = attempt("input-scale", lambda: _input_stats(watch))
    if watch.held:
        args, kwargs = watch.held[min(watch.held)]
        evidence.eval_dropout = attempt("eval-mode dropout", lambda: checks.eval_dropout(
            copy_model(watch.initial), lambda m: m(*args, **kwargs)))
    if len(watch.record.players) > 1:
        evidence.probe.notes.append("the experiments that recompute the loss did not run: with several optimizers "
                                    "(a GAN), one model's loss is made by the others")
        return
    held, options, kind, why, steps = held_batches(watch)
    if not held:
        evidence.probe.notes.append(f"the experiments that recompute the loss did not run: {why}")
        return
    loss = _FUNCTIONS[kind]

    def compute(m, batch):
        out = m(batch[0]) if len(batch) == 2 else m(*batch[0], **batch[1])
        return loss(out, batch[-1], **options)

    evidence.overfit = attempt("overfit-one-batch",
                               lambda: checks.overfit_one_batch(lambda: copy_model(watch.initial), held[0], compute))
    evidence.zeroed_inputs_init = attempt(
        "input-independence", lambda: checks.zeroed_inputs(copy_model(watch.initial), held[:2], compute))
    evidence.zeroed_inputs = attempt("input-independence",
                                     lambda: checks.zeroed_inputs(watch.model, held[:2], compute))
    amp = evidence.amp
    if amp and amp.get("mode") == "fp16":
        amp["precision"] = attempt("fp16 precision", lambda: _precision(watch, evidence, held[0], steps[0], compute))


def _input_stats(watch) -> dict | None:
    """What the first weight layer of the model, as it was before its first step, receives on the script's own
    first batches (in training mode, so that a BatchNorm over raw features normalises as it does in training)."""
    model = copy_model(watch.initial).train()
    with torch.no_grad(), checks.ModelInputs(model) as seen:
        for step in sorted(watch.held)[:4]:
            args, kwargs = watch.held[step]
            model(*args, **kwargs)
    return checks.input_stats(seen, direct=True)


def _precision(watch, evidence: Evidence, batch, step: int, compute) -> dict:
    """fp16's flushed and overflowing values on the script's own batch, from the initial weights (as the
    replay's check), at the scale the script's backward saw: its GradScaler's last scale times what it did to
    the loss after its loss function (an accumulation divisor, a weight), read as the loss it backpropagated
    over the loss function's own value on that batch."""
    model = copy_model(watch.initial)
    device = next(model.parameters()).device
    with torch.no_grad():
        value = float(compute(model, batch))
    backward = float(evidence.loss[step]) if step < evidence.loss.size else float("nan")
    factor = backward / value if value and math.isfinite(value) and math.isfinite(backward) else 1.0
    scales = evidence.amp["scales"]
    scale = float(scales[-1]) if len(scales) and math.isfinite(scales[-1]) else 1.0
    amp = mixed.Amp("fp16", device, make_scaler=lambda: None)  # autocast only: the scale is passed as a number
    return mixed.precision(model, batch, compute, amp, scale * factor, device)


def range_test(script, watch, evidence: Evidence, stats_every: int, seed: int) -> None:
    """Smith's LR range test on the script: re-run for up to LR_RANGE_STEPS steps, every step's rate the sweep's
    (the groups kept in the script's proportions), stopped once the loss blows up."""
    import os

    from ..errors import AuditError
    from .loopwatch import LoopFix
    from .rerun import rerun

    if len(watch.record.players) > 1:
        evidence.probe.notes.append("the LR range test did not run: with several optimizers (a GAN) each one's loss "
                                    "is made by the others")
        return
    if evidence.loop.get("not_rerun"):
        evidence.probe.notes.append(f"the LR range test did not run: {evidence.loop['not_rerun']}")
        return
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        evidence.probe.notes.append("the LR range test did not run: under torchrun a re-run would join the job's "
                                    "process group; run `audit run` on one process for it")
        return
    try:
        swept = rerun(script, LoopFix(lr_sweep=True), checks.LR_RANGE_STEPS, stats_every, seed)
    except AuditError as exc:
        evidence.probe.notes.append(f"the LR range test could not run on this script: {exc}")
        return
    n = min(swept.loss.size, 0 if swept.lrs is None else len(swept.lrs))
    if n:
        evidence.lr_range = checks.range_result(swept.lrs[:n, 0].tolist(), swept.loss[:n].tolist())
        keys = (swept.loop or {}).get("sample_keys")
        if keys:  # as the replay's sweep: which steps met only samples the re-run had not trained on
            evidence.lr_range["unseen"] = checks.unseen_steps(keys[:n])
