"""Per-parameter gradient and update sizes, computed on the device every step.

Each tensor's scale is its RMS, ‖x‖/√n, so the ratios the rules read are ‖g‖/‖w‖ and ‖Δw‖/‖w‖, the
relative step sizes of LARS/LAMB (You et al. 2017). For zero-mean weights this equals the makemore
lecture's std(Δw)/std(w); unlike std it stays meaningful for norm-layer gains, whose mean is 1 and
whose std is 0 at init. Norms of all tensors come from one fused `_foreach_norm` launch, so the cost per
step does not grow with the number of tensors: two norm launches, one copy and one subtraction. The norms
go to the log as lists of 0-d tensors, stacked all at once at read-back.

Gradient norms are taken every step (a rare spike or a NaN must not slip between samples); the weight
and update norms only on the probe's measured steps (see `ProbeOptions.stats_every`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..distributed import local
from .devicelog import DeviceLog
from .spill import ParkedBefore


class ParamTracker:
    """Records ‖grad‖ and whether it was set every step, and ‖w‖, ‖Δw‖ on measured steps, per tensor."""

    def __init__(self, named_params: list[tuple[str, nn.Parameter]], log: DeviceLog, sharded: bool = False,
                 staged: bool = False):
        self.names = [n for n, _ in named_params]
        self.params = [p for _, p in named_params]
        self.log = log
        # FSDP2: each rank measures its own shard; the ranks' norms combine in squares at read-back.
        self._sharded = sharded
        # In-place mode on an accelerator: the weights before a measured step wait in (pinned) host memory
        # instead of a second copy of the model on the device, and come back one tensor at a time.
        self._staged = staged
        # On the CPU, where host memory is the device's, they are parked in a temporary file instead.
        self._parked = ParkedBefore([p.detach() for p in self.params]) if staged and \
            self.params[0].device.type == "cpu" else None
        pin = staged and torch.cuda.is_available() and self.params[0].device.type == "cuda"
        self._before = [] if self._parked is not None else [
            torch.empty(local(p).shape, dtype=p.dtype, device="cpu", pin_memory=pin) if staged else
            torch.empty_like(local(p), memory_format=torch.contiguous_format).detach() for p in self.params]
        self._nan = torch.full((), float("nan"), device=self.params[0].device)
        # Known on the host without asking the device, so kept here rather than in the DeviceLog.
        self.has_grad: dict[int, list[bool]] = {}
        self._measuring = False
        self._all_present = [True] * len(self.params)  # shared by every step where each tensor got a gradient
        self._fp32 = all(p.dtype == torch.float32 for p in self.params)

    def _data(self) -> list[torch.Tensor]:
        return [local(p).detach() for p in self.params] if self._sharded else [p.detach() for p in self.params]

    def after_backward(self, step: int, measure: bool = True) -> None:
        grads = [p.grad for p in self.params]
        if self._sharded:
            grads = [None if g is None else local(g) for g in grads]
        if not measure and self._fp32 and not any(g is None or g.is_sparse for g in grads):
            # The path of most steps, kept to one norm launch and no Python beyond it: on a sub-millisecond
            # step every microsecond here is a percent of the probe's overhead.
            self.log.put("param/grad_norm", list(torch._foreach_norm(grads, 2)), step)
            self.has_grad[step] = self._all_present
            self._measuring = False
            return
        with torch.no_grad():
            mask = [g is not None for g in grads]
            data = self._data() if measure else []
            n = len(grads)
            if all(mask) and not any(g.is_sparse for g in grads):
                # Gradient and weight norms in one launch.
                norms = _norms(grads + data)
            else:
                dense = iter(_norms([g.to_dense() if g.is_sparse else g for g in grads if g is not None] + data))
                norms = [next(dense) if m else self._nan for m in mask] + [next(dense) for _ in data]
            # Lists, not stacked here: stacking a handful of 0-d tensors costs more on the CPU than the norms
            # themselves (bench/bench_probe.py); the log stacks every step's at once when it reads back.
            self.log.put("param/grad_norm", norms[:n], step)
            # NaN in grad_norm alone could be "no gradient" or "a NaN gradient"; this tells them apart.
            self.has_grad[step] = mask
            self._measuring = measure
            if not measure:
                return
            self.log.put("param/data_norm", norms[n:], step)
            if self._parked is not None:
                self._parked.write(data)
            elif self._staged:
                for before, d in zip(self._before, data, strict=True):
                    before.copy_(d, non_blocking=True)
            else:
                torch._foreach_copy_(self._before, data)

    def after_step(self, step: int) -> None:
        if not self._measuring:
            return
        with torch.no_grad():
            if self._parked is not None:
                self.log.put("param/update_norm", self._parked.diff_norms(self._data()), step)
                return
            if self._staged:
                self.log.put("param/update_norm", [_staged_diff_norm(before, d)
                                                   for before, d in zip(self._before, self._data(), strict=True)],
                             step)
                return
            # In place: the snapshot becomes w_before - w_after = -Δw, whose norm is ‖Δw‖.
            torch._foreach_sub_(self._before, self._data())
            self.log.put("param/update_norm", _norms(self._before), step)


# In place on an accelerator, a weight before the step comes back in pieces of at most this many elements: the
# device holds one piece (16 MiB in float32) beside the model, not a copy of its largest tensor.
STAGED_CHUNK = 1 << 22


def _staged_diff_norm(before: torch.Tensor, now: torch.Tensor) -> torch.Tensor:
    """‖before - now‖ with `before` in host memory, brought to the device a piece at a time, each piece freed
    (for the next to reuse) once its norm is taken. Stream order keeps each copy back behind the copy out: no
    host sync."""
    flat_before, flat_now = before.reshape(-1), now.reshape(-1)
    norms = [_norms([flat_before[i:i + STAGED_CHUNK].to(now.device, non_blocking=True, copy=True)
                     .sub_(flat_now[i:i + STAGED_CHUNK])])[0] for i in range(0, flat_now.numel(), STAGED_CHUNK)]
    if len(norms) == 1:
        return norms[0]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros((), device=now.device)


def _norms(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    if not tensors:
        return []
    if all(t.dtype == torch.float32 for t in tensors):
        return list(torch._foreach_norm(tensors, 2))  # the dtype argument takes a slower path on the CPU
    # Half-precision norms overflow past 65504: accumulate and return them in float32.
    return list(torch._foreach_norm(tensors, 2, dtype=torch.float32))


_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def _role(module: nn.Module, param: nn.Parameter) -> str:
    if isinstance(module, nn.Embedding):
        return "embedding"
    if isinstance(module, _NORM_TYPES) or type(module).__name__.lower().endswith("norm"):
        return "norm"
    return "weight" if param.ndim >= 2 else "bias"


def param_table(model: nn.Module, module_order: list[str], named: list[tuple[str, nn.Parameter]] | None = None
                ) -> list[tuple[str, nn.Parameter, str, str, int]]:
    """`named`: the parameters as taken before the first forward. FSDP2 swaps a module's sharded parameters for
    unsharded ones between forward and backward, and frees those after: only the sharded ones stay valid."""
    rank = {name: i for i, name in enumerate(module_order)}
    rows = []
    for index, (name, param) in enumerate(named if named is not None else model.named_parameters()):
        if not param.requires_grad:
            continue
        owner_name = name.rpartition(".")[0]
        owner = model.get_submodule(owner_name)
        order = rank.get(owner_name, len(rank)) * 10_000 + index
        rows.append((name, param, _role(owner, param), type(owner).__name__, order))
    return rows
