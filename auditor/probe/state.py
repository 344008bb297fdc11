"""The probe trains a copy: the caller's model, optimizer and random state are left exactly as found."""

from __future__ import annotations

import copy
import random
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from ..errors import AuditError


@contextmanager
def preserved_rng(device: torch.device):
    """Restore python, numpy, torch CPU and CUDA generators on exit, however the probe ends."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    cpu_state = torch.get_rng_state()
    # Capturing CUDA state initialises CUDA; only do so when CUDA is (or is about to be) in use.
    use_cuda = torch.cuda.is_available() and (torch.cuda.is_initialized() or device.type == "cuda")
    cuda_state = torch.cuda.get_rng_state_all() if use_cuda else None
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(cpu_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state_all(cuda_state)


def torch_rng_state(device: torch.device):
    """The torch generators a forward pass draws from (dropout): CPU, and the probe's CUDA device."""
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


@contextmanager
def replayed_rng(state, device: torch.device):
    """Run a block with the generators as they were at `state`, then put the current ones back, so a
    repeated forward draws the same dropout masks and the training run's random stream is untouched."""
    now = torch_rng_state(device)
    _set_rng(state, device)
    try:
        yield
    finally:
        _set_rng(now, device)


def _set_rng(state, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def copy_model(model: nn.Module) -> nn.Module:
    try:
        return copy.deepcopy(model)
    except Exception as exc:
        raise AuditError(f"the model cannot be copied for the probe (copy.deepcopy failed: {exc}); "
                         "the auditor never trains your own instance") from None
