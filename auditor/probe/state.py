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


def materialise_lazy(setup) -> str | None:
    """Lazy modules (nn.LazyLinear, nn.LazyConv2d) have no weights until their first forward, and nothing can be
    copied, sized or given to an optimizer before that. Their first forward is run here, on the loader's first
    batch, under no_grad, its random draws kept off the caller's generators, as the user's own first training
    step would run it. Returns a note for the report, or None where the model has no lazy parameter."""
    from torch.nn.parameter import is_lazy

    from ..load import call_user
    from .batches import LossComputer, to_device

    model = setup.model
    if not any(is_lazy(p) for p in model.parameters()):
        return None
    it = call_user(iter, setup.train_loader, what=f"iterating the loader in {setup.data_file}")
    try:
        batch = call_user(next, it, what=f"reading a batch from the loader in {setup.data_file}")
    except StopIteration:
        raise AuditError(f"{setup.data_file}: the loader yielded no batches, and the model's lazy modules need one "
                         "to create their weights") from None
    if it is setup.train_loader:  # a generator, iterable once: its first batch goes back in front
        import itertools

        setup.train_loader = itertools.chain([batch], it)
    device = next(model.parameters()).device
    computer = LossComputer(setup.loss_fn, setup.training_step, setup.model_file, setup.data_file)
    batch = to_device(batch, device)
    # In eval mode, so that no BatchNorm of the caller's model learns running statistics from this batch; each
    # module's own mode back afterwards (a BatchNorm frozen on purpose stays in eval).
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with preserved_rng(device), torch.no_grad():
            call_user(lambda: computer(model, batch), what=f"running the lazy model from {setup.model_file} once "
                                                           "to create its weights")
    finally:
        for m, training in modes:
            m.training = training
    return ("the model's lazy modules created their weights on a first forward of the loader's first batch, "
            "before the probe (as a training script's first step would)")
