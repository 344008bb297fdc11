"""Step 1, for a LightningModule: its own `training_step(batch, batch_idx)`, `configure_optimizers()` and
`train_dataloader()` are the contract, so a model.py that defines one needs nothing else. Lightning itself is
not imported: a LightningModule is recognised by its class hierarchy."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from .errors import AuditError
from .load import UserSetup, call_user


def is_lightning_module(model: nn.Module) -> bool:
    return any(cls.__name__ == "LightningModule" for cls in type(model).__mro__)


def setup_from_module(module: nn.Module, loader: Iterable | None, source: str, data_file: str = "<api>",
                      val_loader=None) -> UserSetup:
    if not getattr(module, "automatic_optimization", True):
        raise AuditError(f"{source}: automatic_optimization is off (manual optimization): the probe needs to take "
                         "the optimizer steps itself; audit the model with a training_step(model, batch) instead")
    if loader is None:
        loader = call_user(module.train_dataloader, what=f"calling train_dataloader() of {source}")
        data_file = f"{source}.train_dataloader()"
    return UserSetup(model=module, train_loader=loader, val_loader=val_loader, training_step=_training_step(source),
                     configure_optimizers=_configure(source), model_file=source, data_file=data_file)


def _training_step(source: str):
    count = iter(range(1 << 62))

    def step(model, batch):
        out = model.training_step(batch, next(count))
        if isinstance(out, Mapping):
            if "loss" not in out:
                raise AuditError(f"{source}: training_step returned a dict without 'loss'")
            out = out["loss"]
        if out is None:
            raise AuditError(f"{source}: training_step returned None (Lightning skips such a step); the probe "
                             "needs a loss on every batch")
        return out

    step.__name__ = "training_step"
    return step


def _configure(source: str):
    def configure(model) -> tuple[torch.optim.Optimizer, object | None]:
        conf = call_user(model.configure_optimizers, what=f"calling configure_optimizers() of {source}")
        return _unpack(conf, source)

    return configure


def _unpack(conf, source: str):
    """The forms Lightning accepts: an optimizer; a list or tuple of them; ([optimizers], [schedulers]); a dict
    {"optimizer", "lr_scheduler"}, whose scheduler may be a dict with "interval". Only a scheduler that steps
    every batch ("interval": "step") is stepped by the probe: one stepping each epoch keeps its rate within
    the probe's first epoch, as in the real run."""
    sched = None
    if isinstance(conf, Mapping):
        opt, sched = conf.get("optimizer"), conf.get("lr_scheduler")
    elif isinstance(conf, list | tuple) and len(conf) == 2 and isinstance(conf[0], list | tuple):
        opt, sched = conf[0][0] if conf[0] else None, conf[1][0] if conf[1] else None
    elif isinstance(conf, list | tuple):
        if len(conf) > 1:
            raise AuditError(f"{source}: configure_optimizers returns {len(conf)} optimizers; the probe trains "
                             "with one (automatic optimization steps them all: audit each setup apart)")
        opt = conf[0] if conf else None
    else:
        opt = conf
    if not isinstance(opt, torch.optim.Optimizer):
        raise AuditError(f"{source}: configure_optimizers returned {type(opt).__name__}, not an optimizer")
    if isinstance(sched, Mapping):
        sched = sched.get("scheduler") if sched.get("interval", "epoch") == "step" else None
    else:
        sched = None  # Lightning's default interval is "epoch"
    return opt, sched
