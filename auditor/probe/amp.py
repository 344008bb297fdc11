"""Mixed precision in the probe: `--amp bf16|fp16` (or `amp = "fp16"` in model.py) runs every forward of the
replay under torch.autocast, and fp16 trains through a GradScaler, as torch's AMP recipe does.

fp16 has 5 exponent bits: values beyond 65504 overflow to inf, and gradients below 2**-24 flush to zero.
The scaler multiplies the loss before backward so that small gradients survive, skips every step whose
unscaled gradients are not finite and halves its scale then. Two things go wrong that an fp32 run never
shows: activations or gradients that overflow whatever the scale (the scaler skips step after step and its
scale collapses), and gradients that underflow (a scale too small for them). `precision()` measures both
on one batch, against the same batch in float32; the replay records the scale and the skipped steps.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from ..errors import AuditError
from ..load import call_user
from .state import replayed_rng, torch_rng_state

MODES = {"bf16": torch.bfloat16, "fp16": torch.float16}
FP16_MAX = 65504.0


def scaler_settings(scaler) -> dict:
    return {"init_scale": float(getattr(scaler, "_init_scale", 2.0**16)),
            "growth_factor": float(getattr(scaler, "_growth_factor", 2.0)),
            "backoff_factor": float(getattr(scaler, "_backoff_factor", 0.5)),
            "growth_interval": int(getattr(scaler, "_growth_interval", 2000))}


class Amp:
    """Autocast and loss scaling for one probe; a no-op when `mode` is None."""

    def __init__(self, mode: str | None, device: torch.device, make_scaler: Callable | None = None,
                 init_scale: float | None = None, model_file: str = "model.py", float32: tuple[str, ...] = ()):
        if mode is not None and mode not in MODES:
            raise AuditError(f"--amp {mode!r}: choose bf16 or fp16")
        self.mode, self.device = mode, device
        self.float32 = tuple(float32)  # fix verification: modules run outside autocast, on float32 inputs
        self.dtype = MODES.get(mode)
        self.scaler = None
        if mode == "fp16":
            scaler = (call_user(make_scaler, what=f"calling make_grad_scaler() in {model_file}")
                      if make_scaler is not None else torch.amp.GradScaler(device.type))
            if scaler is not None and not hasattr(scaler, "scale"):
                raise AuditError(f"{model_file}: make_grad_scaler() returned a {type(scaler).__name__}, expected a "
                                 "torch.amp.GradScaler (or None for fp16 without loss scaling)")
            if init_scale is not None:  # fix verification: the job's scaler (or a default one) from another scale
                base = scaler_settings(scaler) if scaler is not None else {}
                scaler = torch.amp.GradScaler(device.type, **{**base, "init_scale": init_scale})
            self.scaler = scaler if scaler is not None and scaler.is_enabled() else None
        self.settings = scaler_settings(self.scaler) if self.scaler is not None else None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @contextlib.contextmanager
    def kept_float32(self, model: nn.Module):
        """`self.float32`'s modules run in float32 for the duration, as a user's
        `with torch.autocast(device_type, enabled=False): h = layer(x.float())` would; the model is left as it
        was (in place, it is the user's own)."""
        if self.dtype is None or not self.float32:
            yield
            return
        saved = []
        try:
            for name in self.float32:
                try:
                    module = model.get_submodule(name)
                except AttributeError:
                    raise AuditError(f"no module {name!r} to keep in float32") from None
                saved.append((module, module.__dict__.get("forward")))
                module.forward = self._outside_autocast(module.forward)
            yield
        finally:
            for module, own in reversed(saved):
                if own is None:
                    del module.forward
                else:
                    module.forward = own

    def _outside_autocast(self, forward: Callable) -> Callable:
        def to32(x):
            return x.float() if isinstance(x, torch.Tensor) and x.dtype in (torch.float16, torch.bfloat16) else x

        def run(*args, **kwargs):
            with torch.autocast(self.device.type, enabled=False):
                return forward(*map(to32, args), **{k: to32(v) for k, v in kwargs.items()})
        return run

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, opt) -> None:
        """True gradients for the statistics, clipping and the rules; before the optimizer step."""
        if self.scaler is not None:
            self.scaler.unscale_(opt)

    def current_scale(self) -> torch.Tensor | None:
        """The scale this step's loss was multiplied by, as a device tensor (get_scale() would sync)."""
        scale = getattr(self.scaler, "_scale", None) if self.scaler is not None else None
        return scale.detach().reshape(()).clone() if isinstance(scale, torch.Tensor) else None

    def step(self, opt, take_step: Callable) -> None:
        if self.scaler is None:
            take_step()
            return
        self.scaler.step(opt)  # skipped when the unscaled gradients hold inf or NaN
        self.scaler.update()


def precision(model: nn.Module, batch, compute: Callable, amp: Amp, scale: float, device: torch.device) -> dict:
    """One batch twice from the same weights and dropout masks, in float32 and under fp16 autocast with the loss
    multiplied by `scale`. Per module: the largest |output| in fp16, and the share of the gradient elements
    reaching its output that are non-zero in float32 but zero in fp16 (flushed); per parameter the same share
    and whether any fp16 gradient is not finite. One read-back at the end."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    names = {id(m): n for n, m in model.named_modules() if n}
    rng = torch_rng_state(device)
    reference: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(grad):
            if name not in reference:
                reference[name] = grad.detach() != 0
        return hook

    def watch_fp32(module, args, output):
        name = names.get(id(module))
        if name is not None and isinstance(output, torch.Tensor) and output.requires_grad and \
                output.is_floating_point():
            output.register_hook(keep(name))

    model.zero_grad(set_to_none=True)
    handle = nn.modules.module.register_module_forward_hook(watch_fp32)
    try:
        with replayed_rng(rng, device):
            loss32 = compute(model, batch).float()
    finally:
        handle.remove()
    loss32.backward()
    ref_params = [None if p.grad is None else p.grad.detach() != 0 for _, p in named]
    model.zero_grad(set_to_none=True)

    peaks: dict[str, torch.Tensor] = {}
    flushed: dict[str, torch.Tensor] = {}

    def count(name):
        def hook(grad):
            ref = reference.get(name)
            if ref is not None and ref.shape == grad.shape and name not in flushed:
                flushed[name] = torch.stack([ref.sum().float(), (ref & (grad == 0)).sum().float()])
        return hook

    def watch_fp16(module, args, output):
        name = names.get(id(module))
        if name is None or not isinstance(output, torch.Tensor) or output.dtype != torch.float16:
            return
        peak = output.detach().abs().amax().float()
        peaks[name] = torch.maximum(peaks[name], peak) if name in peaks else peak
        if output.requires_grad:
            output.register_hook(count(name))

    handle = nn.modules.module.register_module_forward_hook(watch_fp16)
    try:
        with replayed_rng(rng, device), amp.autocast():
            loss = compute(model, batch)
    finally:
        handle.remove()
    (loss.float() * scale).backward()
    rows, values = [], []
    for (name, p), ref in zip(named, ref_params, strict=True):
        if ref is None or p.grad is None:
            continue
        g = p.grad.detach()
        rows.append(name)
        values.append(torch.stack([ref.sum().float(), (ref & (g == 0)).sum().float(),
                                   (~torch.isfinite(g)).any().float()]))
    model.zero_grad(set_to_none=True)
    params = _host_rows(rows, values, lambda v: {"flushed": v[1] / v[0] if v[0] else 0.0, "nonzero": int(v[0]),
                                                  "nonfinite": bool(v[2])})
    grads = _host_rows(list(flushed), list(flushed.values()),
                       lambda v: {"flushed": v[1] / v[0] if v[0] else 0.0, "nonzero": int(v[0])})
    outputs = _host_rows(list(peaks), list(peaks.values()), float)
    return {"scale": float(scale), "loss": float(loss.detach().float()), "params": params, "outputs": outputs,
            "grads": grads}


def _host_rows(names: list[str], values: list[torch.Tensor], row: Callable) -> dict:
    if not values:
        return {}
    host = torch.stack(values).cpu().double().numpy()
    return {name: row(host[i] if host.ndim > 1 else float(host[i])) for i, name in enumerate(names)}
