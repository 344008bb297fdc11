"""Batches and the loss: pull batches from the user's loader, check them, and turn one into a loss."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import interrupt
from ..errors import AuditError
from ..load import call_user
from .lossspy import LossCall, LossSpy

IGNORE_INDEX = -100  # F.cross_entropy's default: targets equal to it are skipped, so they are allowed


def map_tensors(batch, fn: Callable[[torch.Tensor], torch.Tensor]):
    """The same batch structure (tensor, tuple, namedtuple, list, dict, nested) with fn applied to each tensor."""
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(map_tensors(b, fn) for b in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(map_tensors(b, fn) for b in batch)
    if isinstance(batch, dict):
        return {k: map_tensors(v, fn) for k, v in batch.items()}
    return batch


def tensors(batch):
    """Every tensor in a batch structure, in order: the walk of map_tensors without building anything."""
    if isinstance(batch, torch.Tensor):
        yield batch
    elif isinstance(batch, list | tuple):
        for b in batch:
            yield from tensors(b)
    elif isinstance(batch, dict):
        for b in batch.values():
            yield from tensors(b)


def to_device(batch, device: torch.device):
    return map_tensors(batch, lambda t: t if t.device == device else t.to(device, non_blocking=True))


def _describe(batch) -> str:
    if isinstance(batch, torch.Tensor):
        return f"a tensor of shape {tuple(batch.shape)}"
    if isinstance(batch, dict):
        return f"a dict with keys {sorted(map(str, batch))[:6]}"
    if isinstance(batch, list | tuple):
        return f"a {type(batch).__name__} of {len(batch)} items"
    return f"a {type(batch).__name__}"


class BatchStream:
    """Batch i of the probe. Re-iterates the loader when it runs out, like a second epoch would."""

    def __init__(self, loader: Iterable, device: torch.device, data_file: str, check: Callable | None = None,
                 on_new_epoch: Callable | None = None):
        self.loader, self.device, self.data_file = loader, device, data_file
        self.check = check
        self.on_new_epoch = on_new_epoch  # (loader, epoch) before each epoch after the first
        self._epochs = 0
        self.exhausted = False
        self._iter = None
        self._epoch_len = 0
        self._index = 0
        self.epoch_length: int | None = None  # batches in the loader's first pass, once it has ended

    def _next_raw(self):
        if self.exhausted:  # a generator: asking it again would start no new pass, only count one
            return None
        if self._iter is None:
            self._iter = self._new_iter()
        try:
            batch = call_user(next, self._iter, what=f"reading a batch from the loader in {self.data_file}")
        except StopIteration:
            if self._epoch_len == 0 and self._index == 0:
                raise AuditError(f"{self.data_file}: the loader yielded no batches; check the dataset "
                                 "is not empty and drop_last does not drop every batch") from None
            self._epochs += 1
            if self.epoch_length is None:
                self.epoch_length = self._epoch_len
            if self.on_new_epoch is not None:
                self.on_new_epoch(self.loader, self._epochs)
            self._iter = self._new_iter()
            self._epoch_len = 0
            try:
                batch = call_user(next, self._iter, what=f"reading a batch from the loader in {self.data_file}")
            except StopIteration:
                # A generator is not re-iterable: the probe ends with the batches it had.
                self.exhausted = True
                return None
        self._epoch_len += 1
        self._index += 1
        return batch

    def _new_iter(self):
        return call_user(iter, self.loader, what=f"iterating the loader in {self.data_file}")

    def next(self):
        was = interrupt.now()
        interrupt.doing(f"reading a batch from the loader in {self.data_file} ({was})")
        batch = self._next_raw()
        interrupt.doing(was)
        if batch is None:
            return None
        if self.check is not None:
            self.check(batch)
        return to_device(batch, self.device)


@dataclass
class LossChoice:
    name: str
    reason: str
    default: bool
    num_classes: int | None = None
    class_dim: int | None = None


def _cross_entropy_layout(output: torch.Tensor, target: torch.Tensor) -> int | None:
    """Where the class dimension is: last (B, T, C) vs (B, T), or second (B, C, H, W) vs (B, H, W)."""
    if output.ndim >= 2 and tuple(output.shape[:-1]) == tuple(target.shape):
        return output.ndim - 1
    if output.ndim >= 2 and output.shape[0] == target.shape[0] and output.shape[2:] == target.shape[1:]:
        return 1
    return None


class LossComputer:
    """Computes the loss of one batch the way the user's code would, and says which loss that is."""

    def __init__(self, loss_fn: Callable | None, training_step: Callable | None, model_file: str,
                 data_file: str):
        self.loss_fn, self.training_step = loss_fn, training_step
        self.model_file, self.data_file = model_file, data_file
        self.choice: LossChoice | None = None
        # While `spy` is set (the loss-at-initialisation forwards), each call records the functional loss the
        # user's code really computed, with its input and options (auditor/probe/lossspy.py).
        self.spy = False
        self.spied: list[LossCall] = []
        # Targets equal to the loss's ignore_index are skipped by it (255 marks a segmentation's void pixels),
        # so they are no out-of-range labels. Known up front from a loss object, or from the first spied call.
        own = getattr(loss_fn, "ignore_index", None)
        self.ignore_index = own if isinstance(own, int) else IGNORE_INDEX
        self._ignore_known = loss_fn is None or isinstance(own, int)

    def unpack(self, batch):
        if isinstance(batch, list | tuple) and len(batch) == 2 and not hasattr(batch, "_fields"):
            return batch
        raise AuditError(f"{self.data_file}: a batch is {_describe(batch)}, but without `training_step` the "
                         "auditor expects (inputs, targets); define training_step(model, batch) in "
                         f"{self.model_file} to say how a batch becomes a loss")

    def forward(self, model: nn.Module, inputs):
        if isinstance(inputs, dict):
            return model(**inputs)
        if isinstance(inputs, list | tuple):
            return model(*inputs)
        return model(inputs)

    def __call__(self, model: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return (loss, output); output is None when a training_step hides it."""
        if not self.spy:
            return self._compute(model, batch)
        with LossSpy(before=self._seen) as spy:
            loss, output = self._compute(model, batch)
        if spy.call is not None:
            self.spied.append(spy.call)
        return loss, output

    def _seen(self, call: LossCall) -> None:
        """The user's loss is about to run: check its class targets with the ignore_index it really passes."""
        if call.kind not in ("cross_entropy", "nll") or call.target is None or call.target.is_floating_point():
            return
        self.ignore_index, self._ignore_known = call.ignore_index, True
        if call.num_classes:
            self._check_range(call.target, call.num_classes)

    def recognised(self) -> LossCall | None:
        """The functional loss seen on every spied forward, if it was one kind throughout."""
        kinds = {c.kind for c in self.spied}
        return self.spied[0] if len(kinds) == 1 else None

    def _compute(self, model: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.training_step is not None:
            if self.choice is None:
                self.choice = LossChoice("training_step", f"training_step() in {self.model_file} returns the "
                                         "loss", default=False)
            loss = self.training_step(model, batch)
            self._check_scalar(loss, "training_step")
            return loss, None
        inputs, target = self.unpack(batch)
        output = self.forward(model, inputs)
        if self.choice is None:
            self.choice = self._choose(output, target)
            if self.choice.num_classes and self._ignore_known:
                # Before the first loss: out-of-range targets are a device-side assert on CUDA. A loss function
                # of the user's may pass its own ignore_index: the spy checks that call before it runs.
                self.check_targets(batch, self.choice.num_classes, on_device=True)
        if self.loss_fn is not None:
            loss = self.loss_fn(output, target)
            self._check_scalar(loss, "loss_fn")
            return loss, output
        if self.choice.name == "cross_entropy":
            c = self.choice.class_dim
            if c == output.ndim - 1:
                loss = F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))
            else:
                loss = F.cross_entropy(output, target)
        else:
            loss = F.mse_loss(output.reshape(target.shape), target)
        return loss, output

    def _check_scalar(self, loss, source: str) -> None:
        if not isinstance(loss, torch.Tensor):
            raise AuditError(f"{self.model_file}: {source} returned a {type(loss).__name__}, expected a scalar "
                             "tensor (the loss)")
        if loss.numel() != 1:
            raise AuditError(f"{self.model_file}: {source} returned a tensor of shape {tuple(loss.shape)}, "
                             "expected a scalar loss; reduce it, e.g. with .mean()")
        if not loss.is_floating_point():
            raise AuditError(f"{self.model_file}: {source} returned an integer tensor, expected a float loss")

    def _choose(self, output, target) -> LossChoice:
        if not isinstance(output, torch.Tensor):
            if self.loss_fn is not None:
                return LossChoice("loss_fn", f"loss_fn() in {self.model_file}", default=False)
            raise AuditError(f"{self.model_file}: the model returned {_describe(output)}, not a tensor; define "
                             "loss_fn(output, target) or training_step(model, batch) in it")
        if not isinstance(target, torch.Tensor):
            if self.loss_fn is not None:
                return LossChoice("loss_fn", f"loss_fn() in {self.model_file}", default=False)
            raise AuditError(f"{self.data_file}: targets are {_describe(target)}, expected a tensor; define "
                             f"loss_fn(output, target) in {self.model_file} for other targets")
        is_index = not target.is_floating_point() and not target.is_complex() and target.dtype != torch.bool
        class_dim = _cross_entropy_layout(output, target) if is_index else None
        if self.loss_fn is not None:
            ce = self.loss_fn is F.cross_entropy or isinstance(self.loss_fn, nn.CrossEntropyLoss)
            classes = output.shape[class_dim] if (ce and class_dim is not None) else None
            return LossChoice("loss_fn", f"loss_fn() in {self.model_file}", default=False,
                              num_classes=classes, class_dim=class_dim)
        if is_index:
            if class_dim is None:
                raise AuditError(f"{self.data_file}: integer targets of shape {tuple(target.shape)} do not match "
                                 f"the model's output of shape {tuple(output.shape)}; for class indices the "
                                 "output needs one extra class dimension, or define loss_fn(output, target)")
            classes = output.shape[class_dim]
            if classes < 2:
                raise AuditError(f"{self.model_file}: the output has a single class; for binary targets return "
                                 "two logits, or define loss_fn = nn.BCEWithLogitsLoss() with float targets")
            where = "last" if class_dim == output.ndim - 1 else "second"
            return LossChoice("cross_entropy", f"targets are integer class indices and the output's {where} "
                              f"dimension holds {classes} classes", default=True, num_classes=classes,
                              class_dim=class_dim)
        if output.shape != target.shape:
            if output.numel() != target.numel():
                raise AuditError(f"{self.data_file}: float targets of shape {tuple(target.shape)} do not match "
                                 f"the output of shape {tuple(output.shape)}; define loss_fn(output, target)")
            return LossChoice("mse", f"targets are floats; the output of shape {tuple(output.shape)} is "
                              f"compared with targets of shape {tuple(target.shape)} element by element",
                              default=True)
        return LossChoice("mse", "targets are floats of the same shape as the output", default=True)

    def check_targets(self, batch, num_classes: int, on_device: bool = False) -> None:
        """Class indices must lie in [0, C). Checked on the loader's host copy before it moves to a GPU;
        `on_device` allows the one sync it takes to check a batch that is already there."""
        _, target = self.unpack(batch)
        if not isinstance(target, torch.Tensor) or (target.is_cuda and not on_device):
            return
        self._check_range(target, num_classes)

    def _check_range(self, target: torch.Tensor, num_classes: int) -> None:
        if target.numel() == 0 or target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            return  # class probabilities (soft targets) have no range to check
        lo, hi = (int(v) for v in torch.aminmax(target))
        if lo < 0 or hi >= num_classes:  # only then is the slower masked check worth it
            valid = target[target != self.ignore_index]
            if valid.numel() == 0:
                return
            lo, hi = (int(v) for v in torch.aminmax(valid))
        if lo < 0 or hi >= num_classes:
            ignored = f"; the loss ignores {self.ignore_index}" if self.ignore_index != IGNORE_INDEX else ""
            raise AuditError(f"{self.data_file}: targets range from {lo} to {hi}, but the model outputs "
                             f"{num_classes} classes (valid targets are 0..{num_classes - 1}{ignored}); fix the "
                             "labels or the size of the output layer, or pass the loss its ignore_index "
                             "(nn.CrossEntropyLoss(ignore_index=255)) if they mark pixels or tokens to skip")


def expected_initial_loss(choice: LossChoice, targets: list[torch.Tensor]) -> tuple[float | None, str]:
    """What a well-initialised model should score before any training, and why."""
    if choice.num_classes:
        c = choice.num_classes
        return math.log(c), f"-ln(1/{c}) for {c} equally likely classes"
    if choice.name == "mse" and targets:
        y = torch.cat([t.detach().float().reshape(-1) for t in targets])
        return float((y * y).mean()), "mean(target²), the loss of an output near zero"
    return None, "unknown for this loss"
