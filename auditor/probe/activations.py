"""Find every activation, whether an `nn.Tanh` module or a plain `torch.tanh(...)` inside `forward`.

A TorchFunctionMode sees each call of an activation function once (module activations call the same
functions), so the lecture-style code `h = torch.tanh(hpreact)` is traced as well as `nn.ReLU()`.
A module stack kept by forward hooks names each activation by module path, or by call site when the
call sits inside a larger module's `forward`.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .devicelog import DeviceLog, stacked

# Thresholds on the activation's output (tanh, sigmoid) or input (ReLU family). The 0.97 band is the
# makemore lecture's saturation test; "dead" asks that a unit be in its flat region for every sample.
TANH_SATURATED = 0.97
TANH_DEAD = 0.99
SIGMOID_SATURATED = 0.03  # within 0.03 of 0 or 1
SIGMOID_DEAD = 0.01
# GELU, SiLU, ELU, Mish, Softplus: below -6 their slope is under ~1.5e-2, as flat as a dead ReLU is.
SMOOTH_DEAD_BELOW = -6.0

HISTOGRAM_SAMPLES = 4096

# Squeeze-excitation units by their class names (torchvision SqueezeExcitation, timm SqueezeExcite, SEModule,
# EffectiveSEModule, SEBlock, SELayer): a pooled side branch whose output gates the body through a sigmoid.
GATE_MODULES = re.compile(r"SqueezeExcit|^(Effective)?SE(Module|Block|Layer)?$")

_ACTIVATION_KINDS = {
    torch.tanh: "tanh", torch.Tensor.tanh: "tanh", torch.tanh_: "tanh", torch.Tensor.tanh_: "tanh",
    F.tanh: "tanh",
    torch.sigmoid: "sigmoid", torch.Tensor.sigmoid: "sigmoid", torch.sigmoid_: "sigmoid",
    torch.Tensor.sigmoid_: "sigmoid", F.sigmoid: "sigmoid",
    torch.relu: "relu", torch.Tensor.relu: "relu", torch.relu_: "relu", torch.Tensor.relu_: "relu",
    F.relu: "relu", F.relu_: "relu", F.relu6: "relu",
    F.leaky_relu: "leaky_relu",
    F.gelu: "smooth", F.silu: "smooth", F.elu: "smooth", F.mish: "smooth", F.softplus: "smooth",
}
# nn.ReLU6 and nn.Hardtanh reach F.hardtanh; only count it when an activation module called it.
_HARDTANH = {F.hardtanh, F.hardtanh_}
_TRACED = set(_ACTIVATION_KINDS) | _HARDTANH

_SKIP_DIRS = (str(Path(torch.__file__).resolve().parent), str(Path(__file__).resolve().parents[1]))


def unit_dim(ndim: int) -> int:
    """Which dimension holds the units: features of (B, H), channels of (B, C, H, W), the last of (B, T, C)."""
    if ndim == 3:
        return 2
    return 1 if ndim >= 2 else 0


def _reduce_dims(ndim: int) -> tuple[int, ...]:
    u = unit_dim(ndim)
    return tuple(d for d in range(ndim) if d != u)


_SITES: dict[tuple, str] = {}


def user_frame(frame):
    """The first frame at or above `frame` in the user's code: not torch's, not the auditor's."""
    while frame is not None and frame.f_code.co_filename.startswith(_SKIP_DIRS):
        frame = frame.f_back
    return frame


def _call_site(func) -> str:
    frame = user_frame(sys._getframe(3))
    key = (func, frame.f_code, frame.f_lineno) if frame is not None else (func,)
    site = _SITES.get(key)
    if site is None:
        fname = getattr(func, "__name__", "act")
        where = "" if frame is None else f"@{Path(frame.f_code.co_filename).name}:{frame.f_lineno}"
        site = _SITES[key] = fname + where
    return site


class ActivationTracer(TorchFunctionMode):
    """Records per-step statistics of each activation into a DeviceLog while active."""

    def __init__(self, model: nn.Module, log: DeviceLog, histogram_steps: set[int]):
        super().__init__()
        self.log = log
        self.histogram_steps = histogram_steps
        self.step = 0
        self.kinds: dict[str, str] = {}
        self.units: dict[str, int] = {}
        self.gating: set[str] = set()  # activations inside a squeeze-excitation unit (GATE_MODULES)
        self.numel: dict[str, dict[int, int]] = {}  # elements per step: batch sizes may vary
        self.module_order: list[str] = []
        self._stack: list[tuple[str, nn.Module]] = []
        self._counts: Counter = Counter()
        self._seen_modules: set[str] = set()
        self._handles = []
        self._nan: dict[torch.device, torch.Tensor] = {}
        self._shapes: dict[str, tuple] = {}  # per activation: the dims reduced to per-unit values, the device
        # Global module hooks, registered only while a measured forward runs: unmeasured steps keep every
        # module on PyTorch's hook-free fast path.
        self._names = {id(module): name for name, module in model.named_modules()}
        self._own = {id(p) for p in model.parameters()}
        self._foreign: dict[int, bool] = {}  # by module id: a network of its own (a GAN's critic, a teacher)

    def __enter__(self):
        self._handles = [nn.modules.module.register_module_forward_pre_hook(self._enter),
                         nn.modules.module.register_module_forward_hook(self._exit)]
        return super().__enter__()

    def __exit__(self, *exc):
        self.remove_hooks()
        return super().__exit__(*exc)

    def remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _enter(self, module, args):
        name = self._names.get(id(module))
        if name is None:
            if self._is_foreign(module):
                self._stack.append((None, module))
            return
        if name == "":
            # A new forward pass of the whole model; a previous one that raised may have left entries.
            self._stack.clear()
            self._counts.clear()
        if name not in self._seen_modules:
            self._seen_modules.add(name)
            self.module_order.append(name)
        self._stack.append((name, module))

    def _is_foreign(self, module: nn.Module) -> bool:
        """A module with parameters, none of them the model's: another network (a GAN's discriminator that the
        generator's loss runs through, a frozen teacher). Its units are not this model's to judge: a critic fed
        a generator's first, nearly identical fakes has half its units off for the whole batch. A wrapper that
        holds the model's parameters (DDP, a LightningModule) is not foreign, nor a parameter-free nn.Sigmoid."""
        foreign = self._foreign.get(id(module))
        if foreign is None:
            params = [id(p) for p in module.parameters()]
            foreign = self._foreign[id(module)] = bool(params) and not any(p in self._own for p in params)
        return foreign

    def _exit(self, module, args, output):
        name = self._names.get(id(module))
        if self._stack and self._stack[-1][1] is module:
            self._stack.pop()
        if name is not None and isinstance(module, nn.RNNBase):
            self._record_recurrent(name, module, output)

    def _record_recurrent(self, name: str, module: nn.RNNBase, output) -> None:
        """RNN, GRU and LSTM run their nonlinearities inside one fused kernel that no function mode sees; their
        output, the hidden state at every time step, is the activation: tanh(...) or relu(...) for nn.RNN, a
        mix of tanh outputs for GRU, o * tanh(c) for LSTM. Units are its last dimension, whatever the layout."""
        out = output[0] if isinstance(output, tuple) else output
        if isinstance(out, nn.utils.rnn.PackedSequence):
            out = out.data
        if isinstance(out, torch.Tensor) and out.is_floating_point() and out.numel() > 1:
            kind = "relu" if getattr(module, "nonlinearity", "tanh") == "relu" else "tanh"
            self._record(f"{name}:hidden", kind, out, None)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in _TRACED or (self._stack and self._stack[-1][0] is None):  # one set lookup, nearly always
            return func(*args, **kwargs)
        kind = _ACTIVATION_KINDS.get(func)
        if kind is None and func in _HARDTANH and self._in_activation_module():
            kind = "relu" if args[1:3] == (0.0, 6.0) else "hardtanh"
        if kind is None or kind == "hardtanh":
            return func(*args, **kwargs)
        x = args[0] if args else kwargs.get("input")
        # Smooth ReLUs are judged on their input, which an in-place call would overwrite.
        pre_max = None
        if kind == "smooth" and isinstance(x, torch.Tensor) and x.ndim >= 1:
            pre_max = x.detach().amax(dim=_reduce_dims(x.ndim)) if x.ndim > 1 else x.detach()
        out = func(*args, **kwargs)
        if isinstance(out, torch.Tensor) and out.is_floating_point() and out.numel() > 1:
            self._record(self._name(func), kind, out, pre_max)
        return out

    def _in_activation_module(self) -> bool:
        return bool(self._stack) and type(self._stack[-1][1]).__module__ == "torch.nn.modules.activation"

    def _name(self, func) -> str:
        path = self._stack[-1][0] if self._stack else ""
        if self._in_activation_module():
            base = path
        elif self._stack and type(self._stack[-1][1]).__module__.startswith("torch.nn."):
            # Inside a built-in block (TransformerEncoderLayer's feed-forward): its path names it, not the line
            # of the user's code that called the block.
            base = f"{path}:{getattr(func, '__name__', 'act')}"
        else:
            site = _call_site(func)
            base = f"{path}:{site}" if path else site
        self._counts[base] += 1
        n = self._counts[base]
        return base if n == 1 else f"{base}#{n}"

    def _record(self, name: str, kind: str, out: torch.Tensor, pre_max) -> None:
        # Sums and counts only, stacked into one small tensor: each is one cheap kernel, where std_mean or a
        # float mean of a mask costs several; `moments()` turns them into means, stds and fractions on the
        # host after the probe. Ops on a detached tensor record no graph, so no no_grad() block is needed.
        step = self.step
        o = out.detach()
        if o.dtype in (torch.float16, torch.bfloat16):
            o = o.float()
        shape = self._shapes.get(name)
        if shape is None:
            self.kinds[name] = kind
            self.units[name] = o.shape[unit_dim(o.ndim)] if o.ndim > 1 else o.numel()
            if any(GATE_MODULES.search(type(m).__name__) for _, m in self._stack):
                self.gating.add(name)
            shape = self._shapes[name] = (_reduce_dims(o.ndim) if o.ndim > 1 else (), o.device)
        dims, device = shape
        self.numel.setdefault(name, {})[step] = o.numel()
        if kind in ("tanh", "sigmoid"):
            a = o.abs() if kind == "tanh" else (o - 0.5).abs()
            sat_at, dead_at = (TANH_SATURATED, TANH_DEAD) if kind == "tanh" else (
                0.5 - SIGMOID_SATURATED, 0.5 - SIGMOID_DEAD)
            counts = [(a > sat_at).sum(), ((a.amin(dim=dims) if dims else a) > dead_at).sum()]
        elif kind == "relu":
            counts = [self._nan_on(device), ((o.amax(dim=dims) if dims else o) <= 0).sum()]
        elif kind == "smooth" and pre_max is not None:
            counts = [self._nan_on(device), (pre_max < SMOOTH_DEAD_BELOW).sum()]
        else:  # leaky ReLU keeps a slope everywhere: it cannot die
            counts = [self._nan_on(device), self._nan_on(device)]
        self.log.put(f"act/{name}", torch.stack([o.sum(), o.square().sum(), *counts]), step)
        if step in self.histogram_steps:
            self.log.put(f"acthist/{name}", _sample(o), step)
        if out.requires_grad:
            out.register_hook(partial(self._record_grad, name, step))

    def _nan_on(self, device: torch.device) -> torch.Tensor:
        nan = self._nan.get(device)
        if nan is None:
            nan = self._nan[device] = torch.full((), float("nan"), device=device)
        return nan

    def _record_grad(self, name: str, step: int, grad: torch.Tensor):
        g = grad.detach().float()
        self.log.put(f"actgrad/{name}", torch.stack([g.sum(), g.square().sum()]), step)
        if step in self.histogram_steps:
            self.log.put(f"actgradhist/{name}", _sample(g), step)
        return None

    def moments(self, name: str, host, steps: int) -> dict[str, np.ndarray]:
        """Per-step mean, std, saturated and dead fractions of an activation and its gradient."""
        n = np.full(steps, np.nan)
        for step, count in self.numel.get(name, {}).items():
            if step < steps:
                n[step] = count
        act = stacked(host.get(f"act/{name}"), steps, 4)
        grad = stacked(host.get(f"actgrad/{name}"), steps, 2)
        mean, std = _mean_std(act[:, 0], act[:, 1], n)
        grad_mean, grad_std = _mean_std(grad[:, 0], grad[:, 1], n)
        return {"mean": mean, "std": std, "saturated": act[:, 2] / n, "dead": act[:, 3] / self.units[name],
                "grad_mean": grad_mean, "grad_std": grad_std}


def _mean_std(total: np.ndarray, squares: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
        var = np.maximum(squares - total * mean, 0.0) / np.maximum(n - 1, 1)
    return mean, np.sqrt(var)


def _sample(t: torch.Tensor) -> torch.Tensor:
    """A deterministic, evenly strided subsample for histograms; the host bins it after the probe."""
    flat = t.reshape(-1)
    stride = max(1, flat.numel() // HISTOGRAM_SAMPLES)
    return flat[::stride][:HISTOGRAM_SAMPLES].float()
