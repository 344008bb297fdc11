"""In-place mode: probe the caller's own model instead of a copy, for models that fill the device.

A copy of the model (and the second copy the experiments start from) costs two models' worth of device
memory; a model that takes 60% of a GPU cannot afford one. Instead the parameters, buffers, gradients,
training flags and the optimizer's state go to host memory once, the probe trains the caller's objects
themselves, and everything is written back bit for bit when it ends, however it ends (an exception, Ctrl-C,
SIGTERM). The experiments and fix verification start from the same snapshot instead of from copies.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable

import torch
from torch import nn

from ..errors import AuditError
from ..interrupt import shielded
from .spill import Parked, SpillFile, give_back_heap

# The copy mode keeps, beyond the caller's model and what training itself needs, the probe's copy and the
# initial copy for the experiments: two models. In-place is chosen when those two, on top of what training
# needs (gradients, two Adam moments and the probe's update-norm buffer: four models), would not fit in the
# free memory. Activations are not counted: they are the same in both modes.
COPY_MODELS = 2
TRAINING_MODELS = 4


def _host(t: torch.Tensor) -> torch.Tensor:
    # A CPU tensor is cloned: the probe would otherwise write into the snapshot through the shared storage.
    return t.detach().to("cpu", copy=True)


def _put(target: torch.Tensor, saved, device: torch.device) -> None:
    if isinstance(saved, Parked):
        if target.device == device and saved.fits(target.data):
            saved.read_into(target.data)
        else:
            target.data = saved.load().to(device)
    elif target.device == device and target.shape == saved.shape and target.dtype == saved.dtype:
        target.data.copy_(saved)
    else:  # the probe replaced .data (a .to(), a resize): give the tensor back what it was
        target.data = saved.to(device, copy=True)


class Snapshot:
    """The model's (and optionally the optimizer's) state in host memory, and its exact restoration."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None):
        self.model = model
        self.spill = None
        with torch.no_grad():
            # By owner and name, so that a tensor the probe swapped for another one is put back as well.
            self.params = [(mod, name, p, self._save(p), None if p.grad is None else _host(p.grad), p.requires_grad,
                            p.device) for mod, name, p in _slots(model, "_parameters")]
            self.buffers = [(mod, name, b, self._save(b), b.device) for mod, name, b in _slots(model, "_buffers")]
        self.training = [(m, m.training) for m in model.modules()]
        self.optimizer = optimizer
        self.optimizer_state = _to_host(optimizer.state_dict()) if optimizer is not None else None

    def _save(self, t: torch.Tensor):
        if t.device.type != "cpu":
            return _host(t)
        if self.spill is None:
            self.spill = SpillFile()
        return self.spill.park(t)  # see auditor/probe/spill.py: on the CPU, host memory is the device's

    def release_optimizer_state(self) -> None:
        """The caller's optimizer state, now in host memory, leaves the device while the probe trains."""
        if self.optimizer is not None:
            self.optimizer.state.clear()

    def restore(self) -> nn.Module:
        """Everything as it was when the snapshot was taken, the caller's optimizer state included."""
        with shielded():
            self.reset_model()
            if self.optimizer is not None:
                self.optimizer.load_state_dict(copy.deepcopy(self.optimizer_state))
        return self.model

    def reset_model(self) -> nn.Module:
        """The model as it was, for the next probe or experiment; the caller's optimizer stays released."""
        with shielded(), torch.no_grad():
            for mod, name, p, saved, grad, requires_grad, device in self.params:
                if mod._parameters.get(name) is not p:
                    mod._parameters[name] = p
                _put(p, saved, device)
                p.grad = None if grad is None else grad.to(device, copy=True)
                p.requires_grad_(requires_grad)
            for mod, name, b, saved, device in self.buffers:
                if mod._buffers.get(name) is not b:
                    mod._buffers[name] = b
                _put(b, saved, device)
            for m, training in self.training:
                m.training = training
        return self.model


def _slots(model: nn.Module, kind: str):
    seen = set()
    for mod in model.modules():
        for name, t in getattr(mod, kind).items():
            if t is not None and id(t) not in seen:  # shared weights: one entry, restored once
                seen.add(id(t))
                yield mod, name, t


def _to_host(obj):
    if isinstance(obj, torch.Tensor):
        return _host(obj)
    if isinstance(obj, dict):
        return {k: _to_host(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_host(v) for v in obj)
    return copy.deepcopy(obj)


def model_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def free_bytes(device: torch.device) -> int | None:
    """Memory a probe could still take on `device`: CUDA's free memory, or the host's available memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                fields = dict(line.split(":", 1) for line in f)
            return int(fields["MemAvailable"].split()[0]) * 1024
        except (OSError, KeyError, ValueError):
            pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else None
            return pages * os.sysconf("SC_PAGE_SIZE") if pages else None
    return None


def choose(model: nn.Module, device: str | None, asked: bool | None) -> tuple[bool, str | None]:
    """(in place?, the note that says why), for `--in-place` (True), `--copy` (False) or the automatic choice:
    in place when copies would not fit, and only on the device the model lives on (--device elsewhere copies)."""
    if asked is not None:
        return asked, ("probed in place (--in-place): the model itself was trained, then restored bit for bit"
                       if asked else None)
    here = {p.device for p in model.parameters()}
    if len(here) != 1 or (device is not None and not same_device(torch.device(device), next(iter(here)))):
        return False, None
    device = next(iter(here))
    size, free = model_bytes(model), free_bytes(device)
    need = size * (COPY_MODELS + TRAINING_MODELS)
    if free is None or need <= free:
        return False, None
    gib = 2**30
    return True, (f"probed in place: copies of the model would need about {need / gib:.1f} GiB on {device} with "
                  f"{free / gib:.1f} GiB free, so the model itself was trained and then restored bit for bit")


def same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def checked_device(model: nn.Module, device: torch.device) -> None:
    here = {p.device for p in model.parameters()}
    if here and not all(same_device(d, device) for d in here):
        where = ", ".join(sorted(str(d) for d in here))
        raise AuditError(f"--in-place probes the model where it lives ({where}), not on {device}: drop --device, "
                         "or move the model there in model.py")


def resetter(snapshot: Snapshot, edit: Callable[[nn.Module], None] | None = None) -> Callable[[], nn.Module]:
    """The model at the start of a probe: the snapshot, with a fix's edit applied for fix verification."""
    def reset() -> nn.Module:
        give_back_heap()  # what the previous probe or experiment freed
        model = snapshot.reset_model()
        if edit is not None:
            with torch.no_grad():
                edit(model)
        return model
    return reset
