"""Mechanical fixes the rules plan (see FixPlan in engine.py); each edits a copy of the model or a batch."""

from __future__ import annotations

import math

import torch
from torch import nn

GAIN = {"tanh": 5 / 3, "sigmoid": 1.0, "relu": math.sqrt(2), "leaky_relu": math.sqrt(2), "smooth": math.sqrt(2)}
_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _fan_in(model: nn.Module, name: str, w: torch.Tensor, units: int) -> int | None:
    """Fan-in of a weight producing `units` outputs: modules store (out, in, ...); a raw matrix used as
    x @ W (the lecture's style) stores (in, out)."""
    owner = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    if isinstance(owner, _WEIGHTED) and name.endswith("weight"):
        return w[0].numel() if w.shape[0] == units else None
    if w.ndim == 2 and w.shape[1] == units:
        return w.shape[0]
    return None


def fan_in_rescale(model: nn.Module, units: int, kind: str, skip: set[str]) -> list[str]:
    """Scale each weight that produces `units` outputs to std gain/sqrt(fan_in), keeping its random pattern,
    and shrink a raw bias of that size by 100 (the lecture's b1 * 0.01). Returns what was changed."""
    changed = []
    for name, p in model.named_parameters():
        if name in skip or not p.requires_grad:
            continue
        if p.ndim >= 2:
            fan_in = _fan_in(model, name, p, units)
            if fan_in and p.std() > 0:
                p.mul_(GAIN.get(kind, 1.0) / math.sqrt(fan_in) / p.std())
                changed.append(name)
        elif p.ndim == 1 and p.numel() == units and "." not in name and p.std() > 0.1:
            p.mul_(0.01)
            changed.append(name)
    return changed


def reinit_for(model: nn.Module, kind: str, skip_last: bool = False) -> None:
    """Kaiming for the ReLU family and smooth ReLUs, Xavier (Glorot) for tanh and sigmoid; zero biases."""
    layers = [m for m in model.modules() if isinstance(m, _WEIGHTED)]
    for m in layers[:-1] if skip_last else layers:
        if kind in ("tanh", "sigmoid"):
            nn.init.xavier_normal_(m.weight, gain=GAIN[kind])
        else:
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def standardiser(mean: list[float], std: list[float]):
    """A batch transform: (x - mean) / std per feature (dim 1), with the statistics the probe measured."""
    m = torch.tensor(mean)
    s = torch.tensor(std).clamp(min=1e-8)

    def transform(batch):
        x, y = batch
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (x - m.to(x.device).view(shape)) / s.to(x.device).view(shape), y

    return transform
