"""Measurements beyond the training replay, each a small experiment on the initial model (a copy, or the
caller's own model restored from its snapshot) or on the batches the probe already holds: inputs and labels,
the output's form, batch mixing, overfitting one batch, zeroed inputs, and the LR range test. Each returns
plain numbers for the evidence."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..evidence import overfit_left
from .batches import LossComputer, map_tensors, tensors
from .lossspy import KINDS, LossCall, LossSpy

OVERFIT_SAMPLES = 8  # few enough that no two share an input with different labels, as a language batch may
OVERFIT_STEPS = 150
OVERFIT_LR = 3e-3  # Adam: fast enough to memorise 8 samples in 150 steps, slow enough not to blow up
# Stop early once the loss is this fraction of its start: memorised, far below the rule's 20% bar. Checked
# every OVERFIT_CHECK steps (a host sync each time).
OVERFIT_DONE, OVERFIT_CHECK = 0.01, 25
LR_RANGE = (1e-6, 10.0)
LR_RANGE_STEPS = 80
LR_RANGE_STOP = 4.0  # stop once the smoothed loss is this many times its best (Smith 2017)


def _float_input(batch, losses: LossComputer) -> torch.Tensor | None:
    """The batch's input tensor when it is floating point and handed to the model as it is: a plain (x, y)
    batch with no training_step in between (None for token ids, dicts, several inputs)."""
    if losses.training_step is not None or not isinstance(batch, list | tuple) or len(batch) != 2:
        return None
    x = batch[0]
    return x if isinstance(x, torch.Tensor) and x.is_floating_point() and x.ndim >= 2 else None


_WEIGHT_LAYERS = (nn.Linear, nn.modules.conv._ConvNd, nn.RNNBase)


class ModelInputs:
    """`with ModelInputs(model) as seen:` keeps, for each forward of the model, the floating-point input (of 2
    dimensions or more) of the first weight layer it reaches (a Linear, a convolution, an RNN): the scale that
    layer's initialisation meets, however the batch is laid out ((categorical, numeric), a training_step) and
    whatever the model does first (a BatchNorm over raw features, its own (x - mean) / std). Only where the
    model takes a floating-point input: a model fed token ids meets its embeddings there, not the data. `direct`
    stays True while that input is the model's own first argument."""

    def __init__(self, model: nn.Module):
        self.model, self.layer, self.inputs, self.direct = model, None, [], True
        self._handles, self._first_arg, self._taken = [], None, True

    def __enter__(self) -> ModelInputs:
        def root(module, args, kwargs):
            self._first_arg = args[0] if args else None
            # A model fed no float tensor (token ids) has nothing of the data's scale to show: nothing is taken.
            self._taken = not any(isinstance(v, torch.Tensor) and v.is_floating_point() and v.ndim >= 2
                                  for v in [*args, *kwargs.values()])

        def layer(name):
            def pre(module, args):
                x = args[0] if args else None
                if self._taken or not (isinstance(x, torch.Tensor) and x.is_floating_point() and x.ndim >= 2):
                    return
                self._taken = True
                if self.layer not in (None, name):
                    return  # another layer first on another batch: the first batch's decides
                self.layer = name
                self.inputs.append(x.detach())
                self.direct = self.direct and x is self._first_arg
            return pre

        self._handles = [self.model.register_forward_pre_hook(root, with_kwargs=True)]
        self._handles += [m.register_forward_pre_hook(layer(n)) for n, m in self.model.named_modules()
                          if isinstance(m, _WEIGHT_LAYERS)]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()


def _stats(xs: list[torch.Tensor]) -> dict | None:
    shapes = {tuple(t.shape[1:]) for t in xs}
    if len(shapes) != 1:
        return None  # inputs whose shape changes from batch to batch (padded sequences): no per-feature view
    x = torch.cat([t.float() for t in xs])
    # (B, F): features; (B, C, ...): channels, as normalisation is done per channel for images and audio.
    flat = x.transpose(0, 1).reshape(x.shape[1], -1)
    mean, std, reach = flat.mean(1), flat.std(1), flat.abs().amax(1)
    lo, hi = flat.min(), flat.max()
    stats = torch.stack([lo, hi]).cpu().numpy()
    return {"mean": mean.cpu().numpy().astype(float).tolist(), "std": std.cpu().numpy().astype(float).tolist(),
            "reach": reach.cpu().numpy().astype(float).tolist(),
            "min": float(stats[0]), "max": float(stats[1]), "layout": "channels" if x.ndim > 2 else "features"}


def input_stats(seen: ModelInputs, direct: bool) -> dict | None:
    """Per-feature (or per-channel) mean and std of what the model's first weight layer received over the
    initial batches. `direct`: that was the batch's own x, which a batch transform can standardise on a copy."""
    stats = _stats(seen.inputs) if seen.inputs else None
    return {**stats, "layer": seen.layer, "direct": bool(direct and seen.direct)} if stats else None


def plain_inputs(batches: list, losses: LossComputer) -> bool:
    """Whether every batch is a plain (x, y) whose x the model gets as it is (no training_step in between)."""
    return all(_float_input(b, losses) is not None for b in batches)


# Batches fingerprinted at the start of the probe: enough consecutive pairs to tell a loader that repeats one
# batch from one that merely repeats a few samples.
FINGERPRINT_STEPS = 10
_FP_ELEMENTS = 4096


def fingerprint(batch) -> torch.Tensor:
    """Two numbers per tensor of the batch, on the device (no sync): its sum and a position-weighted sum of its
    first elements, so two batches agree only if they hold the same values in the same order."""
    parts = []
    for t in tensors(batch):
        flat = t.detach().reshape(-1)[:_FP_ELEMENTS].float()
        weights = _weights(flat.numel(), flat.device)
        parts += [t.detach().float().sum(), (flat * weights).sum()]
    if not parts:
        return torch.zeros(2)
    return torch.stack(parts)


_WEIGHTS: dict = {}


def _weights(n: int, device: torch.device) -> torch.Tensor:
    key = (n, device)
    if key not in _WEIGHTS:
        _WEIGHTS[key] = torch.arange(1, n + 1, device=device, dtype=torch.float32)
    return _WEIGHTS[key]


def label_counts(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class counts of one batch, without a host sync: boolean-mask indexing and `bincount` both ask the
    device for a size, so ignored and out-of-range targets go to an extra bin that is then dropped. Class
    probabilities (soft targets: mixup, CutMix, distillation; classes on dimension 1, as F.cross_entropy
    takes them) count as their most likely class."""
    if target.is_floating_point():
        if target.ndim < 2 or target.shape[1] != num_classes:
            return torch.zeros(num_classes, dtype=torch.int64, device=target.device)
        target = target.argmax(1)
    t = target.reshape(-1).long()
    t = torch.where((t >= 0) & (t < num_classes), t, num_classes)
    counts = torch.zeros(num_classes + 1, dtype=torch.int64, device=t.device)
    return counts.index_add_(0, t, torch.ones_like(t))[:num_classes]


def target_moments(target: torch.Tensor) -> torch.Tensor:
    """Count, sum and sum of squares of one batch's regression targets (float64, no host sync): with them the
    loss of a model that predicts the targets' mean, their variance, is known without keeping the targets."""
    t = target.detach().reshape(-1).double()
    return torch.stack([torch.ones_like(t).sum(), t.sum(), t.square().sum()])


def output_form(outputs: list, loss: str, class_dim: int | None, squashed_by: str | None = None) -> dict | None:
    """What the loss is fed: logits, as cross-entropy and BCE-with-logits expect, or already probabilities
    (a softmax or sigmoid too many); for NLL, log-probabilities or not."""
    outs = [o.detach().float() for o in outputs if isinstance(o, torch.Tensor) and o.is_floating_point()]
    if not outs:
        return None
    if loss == "bce_logits":
        o = torch.cat([t.reshape(-1) for t in outs])
        stats = torch.stack([o.min(), o.max(), o.mean()]).cpu().numpy()
        return {"loss": loss, "min": float(stats[0]), "max": float(stats[1]), "mean": float(stats[2]),
                "squashed_by": squashed_by}
    if loss not in ("cross_entropy", "nll") or class_dim is None:
        return None
    o = torch.cat([t.movedim(class_dim, -1).reshape(-1, t.shape[class_dim]) for t in outs])
    # For NLL the rows should be log-probabilities: logsumexp of each row is 0.
    row_error = (o.logsumexp(-1) if loss == "nll" else o.sum(-1) - 1).abs().max()
    stats = torch.stack([o.min(), o.max(), row_error]).cpu().numpy()
    return {"loss": loss, "min": float(stats[0]), "max": float(stats[1]), "row_sum_error": float(stats[2]),
            "classes": int(o.shape[-1])}


def probability_floor(classes: int) -> float:
    """The least cross-entropy reachable when probabilities in [0, 1] are fed as logits: one-hot p gives
    logit 1 on the target and 0 elsewhere, so the loss is log(e + C - 1) - 1."""
    return math.log(math.e + classes - 1) - 1


def batch_mixing(m: nn.Module, batch, losses: LossComputer) -> dict | None:
    """Gradient of the last sample's output w.r.t. every sample's input, in eval mode (so BatchNorm uses its
    running statistics and mixes nothing legitimately). Any gradient on another sample is a leak."""
    if losses.training_step is not None or not isinstance(batch, list | tuple) or len(batch) != 2:
        return None
    inputs = batch[0]
    if not isinstance(inputs, torch.Tensor) or inputs.ndim < 2 or inputs.shape[0] < 2:
        return None
    m.eval()
    captured = {}
    if inputs.is_floating_point():
        x = inputs.detach().clone().requires_grad_(True)
        leaf = x
    else:  # token ids: the gradient is taken at the first embedding's output instead
        embeddings = [mod for mod in m.modules() if isinstance(mod, nn.Embedding)]
        if not embeddings:
            return None

        def keep(module, args, output):
            # The first embedding of the batch's tokens, not of positions (which has no batch dimension).
            if "leaf" not in captured and output.ndim >= 2 and output.shape[0] == inputs.shape[0]:
                output.retain_grad()
                captured["leaf"] = output

        handles = [e.register_forward_hook(keep) for e in embeddings]
        x = inputs
    try:
        out = losses.forward(m, x)
    finally:
        if not inputs.is_floating_point():
            for h in handles:
                h.remove()
    if not isinstance(out, torch.Tensor) or out.ndim < 1 or out.shape[0] != inputs.shape[0]:
        return None
    leaf = captured.get("leaf", leaf if inputs.is_floating_point() else None)
    if leaf is None or leaf.shape[0] != inputs.shape[0]:
        return None
    out[-1].float().sum().backward()
    g = leaf.grad
    if g is None:
        return None
    per_sample = g.detach().float().reshape(g.shape[0], -1).abs().amax(1).cpu().numpy()
    own, others = float(per_sample[-1]), per_sample[:-1]
    return {"own": own, "others_max": float(others.max()), "leaking": int((others > 1e-6 * max(own, 1e-30)).sum()),
            "batch": int(inputs.shape[0])}


# A future position "depends" on the present when its gradient exceeds this fraction of the largest gradient at
# the present and past positions: a causal model gives exactly 0 (masked softmax weights are exact zeros).
CAUSAL_TOLERANCE = 1e-6


def _next_token_ids(batch):
    """(token ids, forward) when the batch trains next-token prediction: targets are the inputs shifted by one,
    or `labels` equal `input_ids` (Hugging Face causal LMs shift inside); None otherwise."""
    if isinstance(batch, list | tuple) and len(batch) == 2:
        x, y = batch
        if (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.ndim == 2 and x.shape == y.shape
                and not x.is_floating_point() and x.shape[1] >= 2 and torch.equal(x[:, 1:], y[:, :-1])):
            return x, lambda m, ids: m(ids)
    if isinstance(batch, dict):
        ids, labels = batch.get("input_ids"), batch.get("labels")
        if isinstance(ids, torch.Tensor) and isinstance(labels, torch.Tensor) and ids.ndim == 2 and \
                ids.shape[1] >= 2 and torch.equal(ids, labels):
            return ids, lambda m, x: m(input_ids=x)
    return None, None


def _logits(out):
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, list | tuple) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def causal_leak(m: nn.Module, batch) -> dict | None:
    """For next-token training: does the output at position t depend on inputs after t? The gradient of one
    position's output with respect to the token embeddings of every position, in eval mode, on one sequence;
    the module where the future gets in is the deepest one whose input carries gradient from future positions
    while its output does not."""
    ids, forward = _next_token_ids(batch)
    if ids is None:
        return None
    m.eval()
    ids = ids[:1]
    T = ids.shape[1]
    t = T // 2
    names = {id(mod): name for name, mod in m.named_modules() if name}
    seen: dict[str, list] = {}
    captured = {}

    def track(tensor):
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and tensor.requires_grad and \
                tensor.ndim >= 2 and tuple(tensor.shape[:2]) == (1, T):
            tensor.retain_grad()
            return tensor
        return None

    def hook(module, args, output):
        name = names.get(id(module))
        if name is None:
            return
        if isinstance(module, nn.Embedding) and "leaf" not in captured:
            captured["leaf"] = track(output)
        out = output[0] if isinstance(output, tuple) and output else output
        seen[name] = [track(args[0]) if args else None, track(out)]

    handle = nn.modules.module.register_module_forward_hook(hook)
    try:
        logits = _logits(forward(m, ids))
    finally:
        handle.remove()
    leaf = captured.get("leaf")
    if logits is None or leaf is None or logits.ndim < 2 or logits.shape[1] != T:
        return None
    logits[0, t].float().sum().backward()
    if leaf.grad is None:
        return None

    def split(g):
        g = g.detach().float().abs().reshape(T, -1).amax(1)
        return float(g[: t + 1].max()), float(g[t + 1:].max())

    own, future = split(leaf.grad[0])
    leaks = future > CAUSAL_TOLERANCE * max(own, 1e-30)
    where = []
    if leaks:
        flows = {}
        for name, (inp, out) in seen.items():
            if inp is not None and out is not None and inp.grad is not None:
                i_own, i_future = split(inp.grad[0])
                o_future = split(out.grad[0])[1] if out.grad is not None else 0.0
                flows[name] = i_future > CAUSAL_TOLERANCE * max(i_own, 1e-30) and o_future <= CAUSAL_TOLERANCE * max(
                    i_own, 1e-30)
        candidates = [n for n, mixes in flows.items() if mixes]
        where = [n for n in candidates if not any(c != n and c.startswith(n + ".") for c in candidates)]
    # A leak in a later layer hides one in an earlier layer from this test (the earlier one's output reaches
    # position t through the later leak); the same code in the other layers is named alongside.
    kinds = {type(m.get_submodule(n)) for n in where}
    alike = [n for n, mod in m.named_modules() if n and type(mod) in kinds and n not in where]
    return {"position": t, "length": T, "own": own, "future": future, "leaks": bool(leaks), "modules": where,
            "same_code": alike}


def overfit_one_batch(fresh: Callable[[], nn.Module], batch, compute: Callable) -> dict:
    """Adam on the initial model (`fresh()`: a copy, or the snapshot restored), on the first OVERFIT_SAMPLES only.
    Where OVERFIT_LR does not memorise them, once more from the start at a tenth of it: 3e-3 is too hot for some
    transformers without warmup (torchvision's Swin-V2-T: 71% of the way left at 3e-3, 0.5% at 3e-4 in 25 steps),
    and a model that either rate can fit can express its targets. Where neither does, once more at ten times it:
    Adam moves a parameter by about its rate per step, so in 150 steps at 3e-3 by 0.45 at most, and some models
    must move one further to fit (CORAL's ordinal thresholds, which start equal and must spread by units: 50% of
    the way left at 3e-3, 16% at 3e-2). Whatever the rate, a broken output or loss does not fit. The best attempt
    is kept."""
    small = map_tensors(batch, lambda t: t[:OVERFIT_SAMPLES] if t.ndim else t)
    tried = []
    for lr in (OVERFIT_LR, OVERFIT_LR / 10, OVERFIT_LR * 10):
        losses, floor = _memorise(fresh(), small, compute, lr)
        tried.append((overfit_left(losses, floor)[0], lr, losses, floor))
        if tried[-1][0] <= OVERFIT_DONE:
            break
    _, lr, losses, floor = min(tried, key=lambda t: t[0])
    return {"losses": losses, "samples": OVERFIT_SAMPLES, "steps": len(losses), "lr": lr, "floor": floor,
            "rates": [t[1] for t in tried]}


def _memorise(m: nn.Module, small, compute: Callable, lr: float) -> tuple[list[float], float | None]:
    m.train()
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=lr)
    losses = []
    floor = None
    for step in range(OVERFIT_STEPS):
        opt.zero_grad(set_to_none=True)
        if step == 0:
            with LossSpy() as spy:
                loss = compute(m, small)
            floor = loss_floor(spy.call)
        else:
            loss = compute(m, small)
        loss.backward()
        opt.step()
        losses.append(loss.detach().float())
        done = (step + 1) % OVERFIT_CHECK == 0  # a host sync only every OVERFIT_CHECK steps
        if done and overfit_left([float(losses[0]), float(losses[-1])], floor)[0] <= OVERFIT_DONE:
            break
    return torch.stack(losses).cpu().numpy().astype(float).tolist(), floor


_FUNCTIONS = {kind: fn for fn, kind in KINDS.items()}
FLOOR_STEPS = 300


def loss_floor(call: LossCall | None) -> float | None:
    """The least loss any output could reach on these targets under this loss and its options: the user's
    functional loss minimised over a free output tensor. 0 for a plain cross-entropy on hard labels; above 0
    with label smoothing, class weights with smoothing, soft targets (their entropy), or targets that no single
    output fits. None where the loss was not recognised."""
    if call is None or call.target is None or call.kind not in _FUNCTIONS:
        return None
    fn = _FUNCTIONS[call.kind]
    with torch.enable_grad():
        x = call.input.detach().float()
        # Probabilities (bce) are reached through a sigmoid and log-probabilities (nll) through a log-softmax,
        # so that the free tensor stays a valid input.
        z = (torch.logit(x.clamp(1e-4, 1 - 1e-4)) if call.kind == "bce" else x.clone()).requires_grad_(True)
        target = call.target
        options = dict(call.options)
        opt = torch.optim.Adam([z], lr=0.1)
        best = math.inf
        for _ in range(FLOOR_STEPS):
            opt.zero_grad(set_to_none=True)
            out = torch.sigmoid(z) if call.kind == "bce" else (
                torch.log_softmax(z, dim=1 if z.ndim > 1 else 0) if call.kind == "nll" else z)
            value = fn(out, target.float() if call.kind in ("bce", "bce_logits") else target, **options)
            if value.numel() != 1:
                return None
            value.backward()
            opt.step()
            best = min(best, float(value.detach()))
    return best if math.isfinite(best) else None


def _zero_inputs(b):
    """The batch with its inputs zeroed, or None where they cannot be told apart from the rest. Batch dicts are
    left out: a transformer initialised small (BERT's 0.02) gives near-uniform logits whatever its input, so its
    loss moves by under 0.1% when the input is zeroed (measured on a healthy tiny BERT), and after a short probe
    it may still predict the label frequencies; comparing outputs rather than losses would be needed there."""
    if isinstance(b, list | tuple) and len(b) == 2 and isinstance(b[0], torch.Tensor):
        return type(b)((torch.zeros_like(b[0]), b[1]))
    return None


def zeroed_inputs(model: nn.Module, batches: list, compute: Callable) -> dict | None:
    """The trained model's loss on real batches and on the same batches with the inputs set to zero."""
    real, zero = [], []
    with torch.no_grad():
        for b in batches:
            zeroed = _zero_inputs(b)
            if zeroed is None:
                return None
            real.append(compute(model, b).detach().float())
            zero.append(compute(model, zeroed).detach().float())
    values = torch.stack([torch.stack(real), torch.stack(zero)]).cpu().numpy().astype(float)
    return {"real": values[0].tolist(), "zeroed": values[1].tolist()}


# Enough samples for a significance test of a classifier's accuracy: 8 batches, deduplicated.
LABEL_TEST_BATCHES = 8


def _class_pairs(batches: list, regression: bool = False) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The floating-point inputs, flattened, and the class-index targets of plain (inputs, labels) batches (with
    `regression`, the floating-point targets, flattened per sample), each sample once: a loader that went round
    repeats samples, and a sample scored against a centroid it is part of is predicted from itself."""
    xs, ys = [], []
    for b in batches:
        if not (isinstance(b, list | tuple) and len(b) == 2 and all(isinstance(t, torch.Tensor) for t in b)):
            continue
        x, y = b
        if not x.is_floating_point() or x.ndim < 2 or y.ndim < 1 or y.shape[0] != x.shape[0]:
            continue
        if regression != y.is_floating_point() or (not regression and y.ndim != 1):
            continue
        xs.append(x.detach().float().reshape(x.shape[0], -1))
        ys.append(y.detach().double().reshape(y.shape[0], -1) if regression else y.detach().long())
    if not xs or len({x.shape[1] for x in xs}) != 1 or len({y.shape[1:] for y in ys}) != 1:
        return None
    x, y = torch.cat(xs), torch.cat(ys)
    kept = torch.isfinite(y).all(1) if regression else y >= 0  # a negative label is an ignore_index, no class
    x, y = x[kept], y[kept]
    if not y.numel():
        return None
    _, inverse = torch.unique(x, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), x.shape[0], dtype=torch.long, device=x.device)
    first.scatter_reduce_(0, inverse, torch.arange(x.shape[0], device=x.device), reduce="amin")
    return x[first], y[first]


def inputs_predict_labels(batches: list) -> dict | None:
    """Do the inputs carry their labels? A nearest-class-mean classifier on the raw inputs (standardised per
    feature), fitted on one half of the samples and scored on the other, then the other way round. Labels drawn
    apart from their inputs leave it at the commonest class's share at best, whatever the model; labels that
    belong to their inputs, as a slow model's do, usually lift it well above. Model-free, so a network that has
    not learnt yet cannot hide the relation. Needs plain (inputs, class index) batches; None otherwise."""
    pairs = _class_pairs(batches)
    if pairs is None:
        return None
    x, y = pairs
    n = x.shape[0]
    if n < 20 or torch.unique(y).numel() < 2:
        return None
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).to(x.device)
    halves = (order[: n // 2], order[n // 2:])
    correct = torch.zeros((), device=x.device)
    counts = torch.bincount(y - y.min())
    named = torch.zeros_like(counts)
    for fit, score in (halves, halves[::-1]):
        classes = torch.unique(y[fit])
        centroids = torch.stack([x[fit][y[fit] == c].mean(0) for c in classes])
        predicted = classes[torch.cdist(x[score], centroids).argmin(1)]
        correct = correct + (predicted == y[score]).sum()
        named = named + torch.bincount(predicted - y.min(), minlength=counts.numel())
    got, majority = (int(v) for v in torch.stack([correct.long(), counts.max()]).cpu())
    from scipy.stats import binom

    share = majority / n
    # What naming classes as often as it did, blind to the inputs, would score: below the commonest class's
    # share where classes are unequal (a classifier that spreads its guesses).
    chance = float((named.double() * counts.double()).sum().cpu()) / n ** 2
    return {"samples": n, "correct": got, "accuracy": got / n, "majority": share, "chance": chance,
            "p": float(binom.sf(got - 1, n, share))}


def inputs_predict_targets(batches: list) -> dict | None:
    """inputs_predict_labels for regression targets: a ridge regression on the raw inputs (standardised per
    feature; its strength the features' count, so that it shrinks as much where features outnumber samples),
    fitted on one half of the samples and scored on the other, then the other way round, against predicting the
    fitted half's mean. `gain`: how much lower its squared error is per sample, with its standard error; targets
    drawn apart from their inputs leave it at about zero or below. None without plain (inputs, targets) batches."""
    pairs = _class_pairs(batches, regression=True)
    if pairs is None:
        return None
    x, y = pairs
    n = x.shape[0]
    if n < 20:
        return None
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)  # float32, as the class test: the inputs may be large
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).to(x.device)
    gains = []
    for fit, score in ((order[: n // 2], order[n // 2:]), (order[n // 2:], order[: n // 2])):
        mean = y[fit].mean(0)
        kernel = (x[fit] @ x[fit].T).double()  # the dual form: samples x samples, whatever the features
        alpha = torch.linalg.solve(kernel + x.shape[1] * torch.eye(len(fit), dtype=kernel.dtype, device=x.device),
                                   y[fit] - mean)
        predicted = mean + (x[score] @ x[fit].T).double() @ alpha
        gains.append(((y[score] - mean) ** 2).sum(1) - ((y[score] - predicted) ** 2).sum(1))
    gain = torch.cat(gains)
    baseline = torch.cat([((y[s_] - y[f].mean(0)) ** 2).sum(1) for f, s_ in
                          ((order[: n // 2], order[n // 2:]), (order[n // 2:], order[: n // 2]))])
    mean_gain, se, base = (float(v) for v in torch.stack([gain.mean(), gain.std() / n ** 0.5,
                                                          baseline.mean()]).cpu())
    from scipy.stats import norm

    return {"kind": "regression", "samples": n, "gain": mean_gain, "gain_se": se, "baseline": base,
            "error": base - mean_gain, "p": float(norm.sf(mean_gain / se)) if se > 0 else 1.0}


def inputs_signal(batches: list, loss_fn: str) -> dict | None:
    """Whether the raw inputs predict their targets: classes, or (mean squared error) regression targets."""
    return inputs_predict_targets(batches) if loss_fn == "mse" else inputs_predict_labels(batches)


def sweep_rate(i: int) -> float:
    """The LR range test's learning rate at its step i: exponential from LR_RANGE[0] to LR_RANGE[1]."""
    lo, hi = LR_RANGE
    return lo * (hi / lo) ** (i / (LR_RANGE_STEPS - 1))


class SweepStop:
    """When the range test stops: a non-finite loss, or the smoothed loss LR_RANGE_STOP times its best. One host
    sync per step, unlike the probe: the test has to stop when the loss blows up."""

    def __init__(self):
        self.losses: list[float] = []
        self.best = math.inf

    def done(self, value: float) -> bool:
        self.losses.append(value)
        if not math.isfinite(value):
            return True
        # A running median, not fastai's mean: one outlier batch must not end the sweep.
        smoothed = float(np.median(self.losses[-5:]))
        self.best = min(self.best, smoothed)
        return len(self.losses) > 6 and smoothed > LR_RANGE_STOP * self.best


def sample_sums(batch) -> torch.Tensor | None:
    """A fingerprint of each sample of the batch's first tensor, on its device: two weighted sums of its values,
    (samples, 2). Tells which samples a model has trained on, whatever order the loader serves them in."""
    x = next((t for t in tensors(batch) if t.ndim >= 1 and t.shape[0] > 0), None)
    if x is None:
        return None
    flat = x.detach().reshape(x.shape[0], -1).float()
    return flat @ _sum_weights(flat.shape[1], flat.device)


_SUM_WEIGHTS: dict = {}


def _sum_weights(width: int, device) -> torch.Tensor:
    """(width, 2): a plain sum and one weighted 1..2 along the sample, made once per width and device: a script's
    every step takes the fingerprint, one matmul."""
    key = (width, str(device))
    if key not in _SUM_WEIGHTS:
        _SUM_WEIGHTS[key] = torch.stack([torch.ones(width), torch.linspace(1.0, 2.0, width)], 1).to(device)
    return _SUM_WEIGHTS[key]


def keys_of(sums) -> list[tuple]:
    """sample_sums on the host, as one hashable key per sample. To 7 digits: a sum may round differently in
    another batch's company (another kernel's blocking), and the device log carries float32."""
    if sums is None:
        return []
    return [(float(f"{a:.7g}"), float(f"{b:.7g}")) for a, b in np.asarray(sums, dtype=np.float64).reshape(-1, 2)]


def sample_keys(batch) -> list[tuple]:
    sums = sample_sums(batch)
    return keys_of(None if sums is None else sums.cpu())


def unseen_steps(keys_per_step: list[list[tuple]]) -> list[bool]:
    """For each step, whether its batch held only samples no earlier step had (no keys: False)."""
    seen, out = set(), []
    for keys in keys_per_step:
        out.append(bool(keys) and seen.isdisjoint(keys))
        seen.update(keys)
    return out


def first_pass_length(keys_per_step: list[list[tuple]]) -> int | None:
    """Steps before the first one most of whose samples were met before: the loader's first pass, where it went
    round (a few samples seen twice are duplicates in the data, not a new pass; a step with no keys leaves it
    unknown)."""
    seen: set = set()
    for i, keys in enumerate(keys_per_step):
        if not keys:
            return None
        if 2 * sum(k in seen for k in keys) > len(keys):
            return i or None
        seen.update(keys)
    return None


def lr_range(m: nn.Module, make_opt: Callable, batches: Callable[[], object], compute: Callable) -> dict:
    """Smith's LR range test: the learning rate grows exponentially each step on a copy of the initial
    model with the user's optimizer; stops once the smoothed loss is LR_RANGE_STOP times its best."""
    m.train()
    opt = make_opt(m)
    lrs, stop = [], SweepStop()
    for i in range(LR_RANGE_STEPS):
        batch = batches()
        if batch is None:
            break
        lr = sweep_rate(i)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss = compute(m, batch)
        loss.backward()
        opt.step()
        lrs.append(lr)
        if stop.done(float(loss.detach())):
            break
    return range_result(lrs, stop.losses)


def range_result(lrs, losses) -> dict:
    return {"lrs": list(lrs), "losses": list(losses), **_suggest(np.array(lrs), np.array(losses))}


def _suggest(lrs: np.ndarray, losses: np.ndarray) -> dict:
    """Suggested LR: one tenth of the rate at the smoothed minimum, a common reading of the range test
    (fastai's lr_find 'minimum/10'); the good range runs from the steepest descent to the minimum."""
    ok = np.isfinite(losses)
    if ok.sum() < 10:
        return {"suggested": None, "good_low": None, "good_high": None}
    lrs, losses = lrs[ok], losses[ok]
    s = np.array([np.median(losses[max(0, i - 2): i + 3]) for i in range(losses.size)])
    i_min = int(np.argmin(s[:-2])) if s.size > 3 else int(np.argmin(s))
    slope = np.gradient(s, np.log10(lrs))
    i_steep = int(np.argmin(slope[: i_min + 1])) if i_min > 0 else 0
    return {"suggested": float(lrs[i_min] / 10), "good_low": float(lrs[i_steep]), "good_high": float(lrs[i_min])}


EXPERIMENTS = ("batch-mixing", "causal-leak", "overfit-one-batch", "LR range", "labels-from-inputs")


class _DropoutSpy(TorchFunctionMode):
    """Dropout drawn in a forward that runs in eval mode: F.dropout and its kin with training=True (their default,
    which nn.Dropout overrides with its module's flag and a bare F.dropout(x, p) does not), and
    scaled_dot_product_attention with dropout_p > 0. Each call site once, as file:line of the user's code."""

    _P = {F.dropout: 0.5, F.dropout1d: 0.5, F.dropout2d: 0.5, F.dropout3d: 0.5, F.alpha_dropout: 0.5,
          F.feature_alpha_dropout: 0.5}

    def __init__(self):
        super().__init__()
        self.sites: dict[str, float] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        p = None
        if func in self._P:
            p = args[1] if len(args) > 1 else kwargs.get("p", self._P[func])
            training = args[2] if len(args) > 2 else kwargs.get("training", True)
            p = p if training else None
        elif func is F.scaled_dot_product_attention:
            p = args[4] if len(args) > 4 else kwargs.get("dropout_p", 0.0)
        if p:
            self.sites.setdefault(_user_site(), float(p))
        return func(*args, **kwargs)


def _user_site() -> str:
    from pathlib import Path

    from .activations import user_frame

    frame = user_frame(sys._getframe(2))
    return "?" if frame is None else f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}"


def eval_dropout(model: nn.Module, forward: Callable[[nn.Module], object]) -> dict:
    """One forward of `model` (a copy) in eval mode, as validation and inference run it, under no_grad: where it
    still draws dropout masks, {"sites": {file:line: p}}; empty where it draws none."""
    model.eval()
    with torch.no_grad(), _DropoutSpy() as spy:
        forward(model)
    return {"sites": dict(list(spy.sites.items())[:10])}


def run_experiments(ev, fresh: Callable[[], nn.Module], make_opt: Callable, losses: LossComputer,
                    compute: Callable, stream, held: list, done: Callable[[], None] = lambda: None) -> None:
    """Each experiment trains or hooks the model `fresh()` returns: a copy of the initial model, or the caller's
    own model reset from its snapshot (in-place mode). Runs on the probe's own batches: the ones it holds,
    then the rest of its stream, so that a loader that can be iterated only once (a generator) serves the
    experiments too."""

    def attempt(name: str, run):
        # An experiment the model cannot take (a forward that hard-codes the batch size, say) costs its own
        # rule its evidence, not the whole audit.
        try:
            return run()
        except Exception as exc:
            first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
            ev.probe.notes.append(f"the {name} experiment could not run on this model: {first_line}")
            return None
        finally:
            done()

    first = held[0]
    # The forward alone where it can be told from the loss: an eval-mode output may not be what the loss takes
    # (Inception's auxiliary logits exist in training mode only).
    ev.eval_dropout = attempt("eval-mode dropout", lambda: eval_dropout(fresh(), lambda m: compute(m, first) if (
        losses.training_step is not None) else losses.forward(m, losses.unpack(first)[0])))
    ev.batch_mixing = attempt("batch-mixing", lambda: batch_mixing(fresh(), first, losses))
    ev.causal_leak = attempt("causal-leak", lambda: causal_leak(fresh(), first))
    ev.overfit = attempt("overfit-one-batch", lambda: overfit_one_batch(fresh, first, compute))
    used, keys = [0], []

    def next_batch():
        b = stream.next()
        if b is None:  # exhausted: cycle through the batches the probe holds
            used[0] += 1
            b = held[used[0] % len(held)]
        keys.append(sample_keys(b))
        return b

    ev.lr_range = attempt("LR range", lambda: lr_range(fresh(), make_opt, next_batch, compute))
    if ev.lr_range:
        # On a small dataset the sweep goes round the loader, and its loss on samples its copy has trained on
        # measures memory, not learning: a sweep of labels unrelated to their inputs dipped below their entropy
        # only once its batches came round again (ResNet-18, 32 batches a pass).
        ev.lr_range["unseen"] = unseen_steps(keys)[:len(ev.lr_range["losses"])]
    more = [b for b in (stream.next() for _ in range(LABEL_TEST_BATCHES - len(held))) if b is not None]
    ev.label_signal = attempt("labels-from-inputs", lambda: inputs_signal(list(held) + more, ev.probe.loss_fn))
