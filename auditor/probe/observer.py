"""The measurement every driver shares: the replay (auditor/probe/run.py), a user's script
(auditor/probe/loopwatch.py) and the trainer callbacks feed one Observer, and get the same Evidence back.

An Observer owns the device log, the activation tracer and the parameter tracker, and the schedule they run
on: gradient norms every step; activations, weights and updates on measured steps (every `stats_every`, and
the last); histograms at the start, the middle and the end. A driver tells it what happened (a step's
forward, its backward, its update), never how to measure it; at the end one read-back turns the log into
Evidence.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from ..evidence import ActivationSeries, Evidence, ParamSeries, ProbeInfo
from .activations import ActivationTracer
from .devicelog import DeviceLog, stacked
from .params import ParamTracker, param_table

# The loss is checked for NaN every this many steps, so that a run that blew up stops early without a host sync
# on every step.
NAN_CHECK_EVERY = 10


def peak_lr(lrs: np.ndarray | None) -> float | None:
    """The highest rate the first group trained at (a warm-up or decay moves it), from the rates recorded per step."""
    if lrs is None or not lrs.size or not np.isfinite(lrs[:, 0]).any():
        return None
    return float(np.nanmax(lrs[:, 0]))


class Observer:
    def __init__(self, steps: int, stats_every: int):
        self.steps, self.stats_every = steps, stats_every
        self.log = DeviceLog()
        self.tracer: ActivationTracer | None = None
        self.params: ParamTracker | None = None
        self.table: list = []

    def measured(self, step: int) -> bool:
        return step % self.stats_every == 0 or step == self.steps - 1

    def histogram_steps(self) -> set[int]:
        mid = self.steps // 2
        return {0, mid - mid % self.stats_every, self.steps - 1}

    def watch(self, model: nn.Module) -> ActivationTracer:
        """Trace the activations of `model` (the tracer is entered around a measured step's forward)."""
        self.tracer = ActivationTracer(model, self.log, self.histogram_steps())
        return self.tracer

    def track(self, model: nn.Module, named: list | None = None, sharded: bool = False,
              staged: bool = False) -> ParamTracker:
        """Track every trainable tensor of `model`, in forward order once a forward has fixed it."""
        order = self.tracer.module_order if self.tracer is not None else []
        self.table = param_table(model, order, named)
        self.params = ParamTracker([(n, p) for n, p, *_ in self.table], self.log, sharded=sharded, staged=staged)
        return self.params

    def loss(self, step: int, loss) -> None:
        self.log.put("loss", [loss.detach()], step)  # a list: stacked with every other step's at read-back

    def evidence(self, info: ProbeInfo, host: dict, n: int) -> Evidence:
        """The per-step series of the first `n` steps from the read-back `host`."""
        tracer = self.tracer or ActivationTracer(nn.Module(), self.log, set())
        has_grad = self.params.has_grad if self.params is not None else {}
        return _assemble(info, host, self.table, has_grad, tracer, n)


def _assemble(info: ProbeInfo, host, table, has_grad: dict[int, list[bool]], tracer: ActivationTracer,
              n: int) -> Evidence:
    loss = stacked(host.get("loss"), n, 1)[:, 0]
    loss_after = stacked(host.get("loss_after"), n, 1)[:, 0]
    columns = {key: stacked(host.get(f"param/{key}"), n, len(table)) for key in ("grad_norm", "data_norm",
                                                                                  "update_norm")}
    columns["has_grad"] = np.zeros((n, len(table)), dtype=bool)
    for step, mask in has_grad.items():
        if step < n:
            columns["has_grad"][step] = mask
    root_n = np.sqrt([max(p.numel(), 1) for _, p, *_ in table])
    columns["grad_rms"] = columns["grad_norm"] / root_n
    columns["data_rms"] = columns.pop("data_norm") / root_n
    columns["update_rms"] = columns.pop("update_norm") / root_n
    params = [ParamSeries(name=name, shape=tuple(p.shape), role=role, module_type=mtype, order=order,
                          **{key: columns[key][:, i] for key in columns})
              for i, (name, p, role, mtype, order) in enumerate(table)]
    with np.errstate(invalid="ignore", over="ignore"):
        grad_norm = np.sqrt(np.sum(columns["grad_norm"] ** 2, axis=1, where=~np.isnan(columns["grad_norm"])))
    activations = []
    for order, name in enumerate(tracer.kinds):
        hist = dict(zip(*host.get(f"acthist/{name}", ([], [])), strict=True))
        ghist = dict(zip(*host.get(f"actgradhist/{name}", ([], [])), strict=True))
        counts = tracer.numel.get(name) or {0: 0}
        activations.append(ActivationSeries(name=name, kind=tracer.kinds[name], units=tracer.units[name],
                                            order=order, histograms=hist, grad_histograms=ghist,
                                            positions=counts[min(counts)] // max(tracer.units[name], 1),
                                            gating=name in tracer.gating,
                                            **tracer.moments(name, host, n)))
    return Evidence(probe=info, loss=loss, loss_after=loss_after, grad_norm=grad_norm, params=params,
                    activations=activations)
