"""Per-parameter gradient and update statistics, computed on the device every step."""

from __future__ import annotations

import torch
from torch import nn

from .devicelog import DeviceLog


def _std(t: torch.Tensor) -> torch.Tensor:
    if t.is_sparse:
        t = t.to_dense()
    if t.numel() < 2:
        return torch.zeros((), device=t.device)
    return t.float().std()


class ParamTracker:
    """Records, for every trainable tensor, |grad|, std(grad), std(w) and std(Δw) per step.

    The ratios the rules read (std(grad)/std(w), std(Δw)/std(w)) are formed on the host, where a
    parameter that is zero at initialisation gives "undefined" instead of a division by zero.
    """

    def __init__(self, named_params: list[tuple[str, nn.Parameter]], log: DeviceLog):
        self.names = [n for n, _ in named_params]
        self.params = [p for _, p in named_params]
        self.log = log
        self._before: list[torch.Tensor] = []
        self._nan = torch.full((), float("nan"), device=self.params[0].device)

    def after_backward(self, step: int) -> None:
        with torch.no_grad():
            device, nan = self._nan.device, self._nan
            grads = [p.grad for p in self.params]
            present = [g.to_dense() if g.is_sparse else g for g in grads if g is not None]
            norms = iter(torch._foreach_norm(present)) if present else iter(())
            grad_norm = [next(norms).float() if g is not None else nan for g in grads]
            grad_std = [_std(g) if g is not None else nan for g in grads]
            data_std = [_std(p) for p in self.params]
            self.log.put("param/grad_norm", torch.stack(grad_norm), step)
            # NaN in grad_norm alone could be "no gradient" or "a NaN gradient"; this tells them apart.
            self.log.put("param/has_grad", torch.tensor([g is not None for g in grads], dtype=torch.float32,
                                                        device=device), step)
            self.log.put("param/grad_std", torch.stack(grad_std), step)
            self.log.put("param/data_std", torch.stack(data_std), step)
            self._before = [p.detach().clone() for p in self.params]

    def after_step(self, step: int) -> None:
        with torch.no_grad():
            deltas = torch._foreach_sub([p.detach() for p in self.params], self._before)
            self.log.put("param/update_std", torch.stack([_std(d) for d in deltas]), step)
            self._before = []
