"""Which loss the user's code really computes, however it is written.

Users hand the loss over in a dozen forms: the auditor's default, `nn.CrossEntropyLoss(label_smoothing=0.1)`
as `loss_fn`, their own loss class that calls `F.cross_entropy` inside, a `training_step`, a Hugging Face
model that computes its own loss from `labels`. All of them end in one of torch's functional losses, and a
`TorchFunctionMode` sees that call with its real input (the logits), target and options. The probe spies on
the first few forwards only (the loss-at-initialisation batches), so training runs without it.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

# torch's functional losses, by the name the auditor reports them with.
KINDS = {
    F.cross_entropy: "cross_entropy",
    F.nll_loss: "nll",
    F.binary_cross_entropy_with_logits: "bce_logits",
    F.binary_cross_entropy: "bce",
    F.mse_loss: "mse",
    F.l1_loss: "l1",
    F.huber_loss: "huber",
    F.smooth_l1_loss: "smooth_l1",
}
CLASSIFICATION = ("cross_entropy", "nll", "bce_logits", "bce")
LABELS = {"cross_entropy": "cross-entropy (F.cross_entropy)", "nll": "negative log-likelihood (F.nll_loss)",
          "bce_logits": "binary cross-entropy on logits (F.binary_cross_entropy_with_logits)",
          "bce": "binary cross-entropy on probabilities (F.binary_cross_entropy)", "mse": "mean squared error",
          "l1": "mean absolute error (L1)", "huber": "Huber loss", "smooth_l1": "smooth L1 loss"}
_OPTIONS = ("reduction", "label_smoothing", "ignore_index", "weight", "pos_weight", "delta", "beta")


@dataclass
class LossCall:
    kind: str
    input: torch.Tensor
    target: torch.Tensor | None
    options: dict = field(default_factory=dict)
    squashed_by: str | None = None  # "sigmoid" / "softmax" when the loss input came straight from one

    @property
    def num_classes(self) -> int | None:
        if self.kind not in ("cross_entropy", "nll") or self.input.ndim == 0:
            return None
        return int(self.input.shape[1] if self.input.ndim >= 2 else self.input.shape[0])

    @property
    def class_dim(self) -> int | None:
        return (1 if self.input.ndim >= 2 else 0) if self.num_classes else None

    @property
    def soft_targets(self) -> bool:
        """Class probabilities (mixup, CutMix, distillation) rather than class indices."""
        return self.target is not None and self.target.is_floating_point() and self.kind == "cross_entropy"

    @property
    def ignore_index(self) -> int:
        return int(self.options.get("ignore_index", -100))

    def summary(self) -> dict:
        """What the rules read of the call (Evidence.loss_call), as plain values."""
        return {"kind": self.kind, "input_shape": list(self.input.shape),
                "target_shape": None if self.target is None else list(self.target.shape),
                "squashed_by": self.squashed_by, "reduction": self.options.get("reduction", "mean")}

    def describe(self) -> str:
        shown = {k: v for k, v in self.options.items() if k != "reduction" or v != "mean"}
        text = ", ".join(f"{k}={_short(v)}" for k, v in shown.items())
        return LABELS[self.kind] + (f" with {text}" if text else "")


def _short(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of {value.numel()}"
    return repr(value)


_SIGNATURES: dict = {}


def _bind(func, args, kwargs) -> dict:
    sig = _SIGNATURES.get(func)
    if sig is None:
        sig = _SIGNATURES[func] = inspect.signature(func)
    try:
        return sig.bind(*args, **kwargs).arguments
    except TypeError:
        return {}


# Functions that squash scores into probabilities, and the shape-only ones a squashed tensor may pass through
# on its way to the loss (output.squeeze(-1), .view(-1), .float()).
_SQUASH = {"sigmoid", "softmax", "expit"}
_PASS = {"squeeze", "unsqueeze", "view", "reshape", "flatten", "float", "to", "contiguous", "__getitem__", "type_as"}


class LossSpy(TorchFunctionMode):
    """Records the first functional loss called inside the block, and whether a sigmoid or softmax made its
    input (however it was called: nn.Sigmoid, torch.sigmoid, x.sigmoid(), F.softmax)."""

    def __init__(self, before=None, keep_all: bool = False, each=None):
        super().__init__()
        # Called with (kind, input, target) for every loss call: a script's targets, logged as the replay logs its
        # batches' (auditor/probe/loopwatch.py).
        self.each = each
        self.call: LossCall | None = None
        # With keep_all, every loss call as (step, call, id of its input tensor): a script's experiments pair each
        # step's model output with the loss it was fed to (auditor/probe/script_checks.py).
        self.keep_all = keep_all
        self.step = 0
        self.calls: list[tuple[int, LossCall, int]] = []
        # Called with the LossCall before torch runs the loss: out-of-range class targets are checked against
        # the ignore_index the call really passes, before CUDA turns them into a device-side assert.
        self.before = before
        self._squashed: dict[int, str] = {}
        self._alive: list[torch.Tensor] = []  # keeps the tracked tensors alive so their ids are not reused

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = KINDS.get(func)
        bound = _bind(func, args, kwargs) if kind is not None and (self.keep_all or self.call is None
                                                                   or self.each is not None) else {}
        x, y = bound.get("input"), bound.get("target")
        if self.keep_all and isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            options = {k: bound[k] for k in _OPTIONS if k in bound and bound[k] is not None}
            self.calls.append((self.step, LossCall(kind, x.detach(), y.detach(), options), id(x)))
        if kind is not None and self.call is None:
            if isinstance(x, torch.Tensor):
                options = {k: bound[k] for k in _OPTIONS if k in bound and bound[k] is not None
                           and not (k == "ignore_index" and bound[k] == -100)
                           and not (k == "label_smoothing" and bound[k] == 0.0)}
                self.call = LossCall(kind, x.detach(), y.detach() if isinstance(y, torch.Tensor) else None, options,
                                     squashed_by=self._squashed.get(id(x)))
                if self.before is not None:
                    self.before(self.call)
        if self.each is not None and isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            self.each(kind, x, y)
        result = func(*args, **kwargs)
        if self.call is None and isinstance(result, torch.Tensor):
            name = getattr(func, "__name__", "")
            if name in _SQUASH:
                self._squashed[id(result)] = "softmax" if name == "softmax" else "sigmoid"
                self._alive.append(result)
            elif name in _PASS and args and isinstance(args[0], torch.Tensor) and id(args[0]) in self._squashed:
                self._squashed[id(result)] = self._squashed[id(args[0])]
                self._alive.append(result)
        return result


def expected_initial_loss(calls: list[LossCall]) -> tuple[float | None, str]:
    """What a well-initialised model scores before any training with this loss, per element, and why."""
    call = calls[0]
    if call.kind in ("cross_entropy", "nll") and call.num_classes:
        c = call.num_classes
        return math.log(c), f"-ln(1/{c}) for {c} equally likely classes"
    if call.kind in ("bce_logits", "bce"):
        return _bce_at_half(calls)
    targets = [c.target for c in calls if c.target is not None and c.target.is_floating_point()]
    if not targets:
        return None, "unknown for this loss"
    y = torch.cat([t.float().reshape(-1) for t in targets])
    if call.kind == "mse":
        return float((y * y).mean()), "mean(target²), the loss of an output near zero"
    if call.kind == "l1":
        return float(y.abs().mean()), "mean(|target|), the loss of an output near zero"
    if call.kind in ("huber", "smooth_l1"):
        d = float(call.options.get("delta", call.options.get("beta", 1.0)))
        a = y.abs()
        loss = torch.where(a < d, 0.5 * a * a, d * (a - 0.5 * d))
        if call.kind == "smooth_l1" and d > 0:
            loss = loss / d
        return float(loss.mean()), "the loss of an output near zero"
    return None, "unknown for this loss"


def _bce_at_half(calls: list[LossCall]) -> tuple[float, str]:
    """BCE at probability 0.5 is ln 2 per element, times the element's weight: `weight` scales every term,
    `pos_weight` the positive ones (a positive label costs pos_weight * ln 2 at logit 0)."""
    call = calls[0]
    weight, pos_weight = call.options.get("weight"), call.options.get("pos_weight")
    targets = [c.target for c in calls if c.target is not None]
    if (weight is None and pos_weight is None) or not targets:
        return math.log(2), "ln 2 per output: probability 0.5 (logit 0) for every label"
    terms = []
    for c in calls:
        if c.target is None:
            continue
        y = c.target.float()
        w = torch.ones_like(y)
        if pos_weight is not None:
            w = w + (torch.as_tensor(pos_weight, dtype=y.dtype, device=y.device) - 1) * y
        if weight is not None:
            w = w * torch.as_tensor(weight, dtype=y.dtype, device=y.device)
        terms.append(w.reshape(-1))
    scale = float(torch.cat(terms).mean())
    parts = " and ".join(p for p, v in (("pos_weight", pos_weight), ("weight", weight)) if v is not None)
    return math.log(2) * scale, f"ln 2 per output at probability 0.5, weighted by the loss's {parts} " \
        f"(mean weight {scale:.3g})"


def per_element(call: LossCall, value: float) -> float:
    """A summed loss divided by the elements it summed over, so it compares with a per-element expectation."""
    if call.options.get("reduction") != "sum" or call.target is None:
        return value
    n = call.target.numel() if call.kind not in ("cross_entropy", "nll") or call.target.is_floating_point() else (
        int((call.target != call.options.get("ignore_index", -100)).sum()))
    return value / max(n, 1)
