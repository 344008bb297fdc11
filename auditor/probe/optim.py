"""The optimizer and LR scheduler the probe trains with.

The caller's own optimizer is copied, state and all, without calling its constructor: a constructor's
keywords change between torch releases (AdamW gained `decoupled_weight_decay` in its `defaults` in 2.14 and
does not accept it back), and third-party optimizers take whatever they like. Instead the copy is
`copy.deepcopy` with the caller's parameters mapped onto the probe's clone, which works for any
`torch.optim.Optimizer` subclass, and the state is then loaded with `load_state_dict`, which moves it to the
clone's device the way torch itself does.
"""

from __future__ import annotations

import copy
import inspect
import warnings
import weakref
from collections import defaultdict
from collections.abc import Callable

import torch
from torch import nn

from ..errors import AuditError
from ..load import UserSetup, call_user

DEFAULT_OPTIMIZER = "AdamW(lr=1e-3)"

# Set on the instance by torch's LRScheduler (and by accelerate when it uses a grad scaler): a wrapper that
# closes over the *original* optimizer. A copy that kept it would step the caller's parameters.
_INSTANCE_PATCHES = ("step", "zero_grad", "_opt_called", "_with_counter")


def unwrap(optimizer) -> torch.optim.Optimizer:
    """The torch optimizer inside a trainer's wrapper: accelerate's `AcceleratedOptimizer` (`.optimizer`),
    Lightning's `LightningOptimizer` (`._optimizer`), nested ones too."""
    seen = set()
    while id(optimizer) not in seen:
        seen.add(id(optimizer))
        inner = next((getattr(optimizer, a) for a in ("optimizer", "_optimizer")
                      if isinstance(getattr(optimizer, a, None), torch.optim.Optimizer)), None)
        if inner is None or inner is optimizer:
            break
        optimizer = inner
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise AuditError(f"optimizer= needs a torch.optim.Optimizer (or a trainer's wrapper around one), got "
                         f"{type(optimizer).__name__}")
    return optimizer


def copy_optimizer(optimizer, original: nn.Module, clone: nn.Module) -> torch.optim.Optimizer:
    """The same optimizer class, groups, settings and state, over the clone's parameters."""
    optimizer = unwrap(optimizer)
    mapping = {id(p): q for p, q in zip(original.parameters(), clone.parameters(), strict=True)}
    for group in optimizer.param_groups:
        if any(id(p) not in mapping for p in group["params"]):
            raise AuditError("the optimizer holds parameters that are not part of the model; "
                             "pass the optimizer built for this model")
    memo = dict(mapping)
    memo[id(optimizer.state)] = defaultdict(dict)  # filled by load_state_dict below, on the clone's device
    for name, value in vars(optimizer).items():
        if name.endswith("_hooks") and isinstance(value, dict):
            # Hooks may act on the caller's own objects (an EMA of their model, a logger): not run in the probe.
            memo[id(value)] = type(value)()
    try:
        # Optimizer.__getstate__ carries defaults, state and param_groups; anything a subclass keeps beside
        # them (LBFGS keeps its parameter list) is copied through the same memo, so aliases stay aliases.
        clone_opt = copy.deepcopy(optimizer, memo)
        for name, value in vars(optimizer).items():
            if name not in vars(clone_opt) and name not in _INSTANCE_PATCHES:
                setattr(clone_opt, name, copy.deepcopy(value, memo))
        for name in _INSTANCE_PATCHES:
            vars(clone_opt).pop(name, None)
        # deepcopy first: load_state_dict keeps tensors that are already on the right device, which would
        # alias the caller's state and let the probe mutate it.
        clone_opt.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    except AuditError:
        raise
    except Exception as exc:
        raise AuditError(f"the optimizer ({type(optimizer).__name__}) cannot be copied for the probe: "
                         f"{type(exc).__name__}: {exc}; pass make_optimizer instead") from None
    return clone_opt


def hooks_left_out(optimizer) -> int:
    optimizer = unwrap(optimizer)
    return sum(len(v) for k, v in vars(optimizer).items() if k.endswith("_hooks") and isinstance(v, dict)
               and "step" in k)


def copy_scheduler(scheduler, optimizer, clone_opt: torch.optim.Optimizer):
    """The caller's LR scheduler re-attached to the probe's optimizer, at the same point of its schedule."""
    inner = unwrap(optimizer)
    target = getattr(scheduler, "optimizer", None)
    if target is not None and unwrap(target) is not inner:
        raise AuditError("the scheduler is attached to a different optimizer than the one passed; pass the "
                         "optimizer the scheduler was built on")
    memo = {id(inner): clone_opt}
    if target is not None:
        memo[id(target)] = clone_opt
    try:
        return copy.deepcopy(scheduler, memo)
    except Exception as exc:
        raise AuditError(f"the LR scheduler ({type(scheduler).__name__}) cannot be copied for the probe: "
                         f"{type(exc).__name__}: {exc}") from None


def scheduler_needs_metric(scheduler) -> bool:
    """ReduceLROnPlateau steps on a validation metric, once an epoch: nothing a 100-step probe can replay."""
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def step_scheduler(scheduler) -> None:
    with warnings.catch_warnings():
        # The first step warns that optimizer.step was "overridden": the copy calls the class's own step.
        warnings.simplefilter("ignore", UserWarning)
        scheduler.step()


def needs_closure(opt: torch.optim.Optimizer) -> bool:
    """LBFGS and its kind re-evaluate the loss inside step(): they take a closure without a default."""
    try:
        param = inspect.signature(type(opt).step).parameters.get("closure")
    except (TypeError, ValueError):
        return False
    return param is not None and param.default is inspect.Parameter.empty


def stepper(opt: torch.optim.Optimizer) -> Callable[[Callable[[], torch.Tensor]], None]:
    """One optimizer step, given a closure (zero the gradients, forward, backward, return the loss) that only
    optimizers needing it call, since it costs a forward and a backward. Decided once: inspecting the
    signature every step would cost more than a small model's step."""
    if needs_closure(opt):
        return opt.step
    return lambda closure: opt.step()


def build(setup: UserSetup, model: nn.Module, optimizer) -> tuple[torch.optim.Optimizer, bool]:
    """The probe's optimizer over `model`, and whether it is the auditor's default."""
    if optimizer is not None:
        return copy_optimizer(optimizer, setup.model, model), False
    if setup.configure_optimizers is not None:
        opt, sched = setup.configure_optimizers(model)
        if sched is not None:
            _CONFIGURED[opt] = sched
        return opt, False
    if setup.make_optimizer is None:
        return torch.optim.AdamW(model.parameters(), lr=1e-3), True
    opt = call_user(setup.make_optimizer, model.parameters(),
                    what=f"calling make_optimizer() in {setup.model_file}")
    if not isinstance(opt, torch.optim.Optimizer):
        raise AuditError(f"{setup.model_file}: make_optimizer() returned a {type(opt).__name__}, expected a "
                         "torch.optim.Optimizer")
    return opt, False


def build_scheduler(setup: UserSetup, opt: torch.optim.Optimizer, optimizer, scheduler):
    """The probe's LR scheduler: a copy of the caller's, or make_scheduler()'s over the probe's optimizer."""
    if scheduler is not None:
        if optimizer is None:
            raise AuditError("scheduler= needs the optimizer it was built on: pass optimizer= too")
        return copy_scheduler(scheduler, optimizer, opt)
    if setup.make_scheduler is not None:
        return call_user(setup.make_scheduler, opt, what=f"calling make_scheduler() in {setup.model_file}")
    return _CONFIGURED.pop(opt, None)


# The scheduler a LightningModule's configure_optimizers built together with each probe optimizer.
_CONFIGURED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def describe(opt: torch.optim.Optimizer) -> str:
    group = opt.param_groups[0]
    keys = ("lr", "momentum", "betas", "weight_decay", "nesterov")
    shown = [f"{k}={_plain(group[k])}" for k in keys if k in group and group[k] not in (None, False)]
    more = f", {len(opt.param_groups)} groups" if len(opt.param_groups) > 1 else ""
    return f"{type(opt).__name__}({', '.join(shown)}{more})"


def lr_value(lr) -> float:
    """A group's learning rate as a float, without a device sync (a rate held in a CUDA tensor reads NaN)."""
    if isinstance(lr, torch.Tensor):
        return float(lr.item()) if lr.device.type == "cpu" else float("nan")
    return float(lr) if isinstance(lr, int | float) else float("nan")


def scheduled_peak(opt: torch.optim.Optimizer) -> float | None:
    """The first group's highest rate a scheduler will bring it to, where the scheduler wrote it into the group:
    OneCycleLR's `max_lr`, and every LRScheduler's `initial_lr` (the base rate a warm-up climbs to). A probe that
    sees only a warm-up's first steps judges the rate against this, not the small rates it saw."""
    group = opt.param_groups[0] if opt.param_groups else {}
    rates = [lr_value(group[k]) for k in ("max_lr", "initial_lr")
             if isinstance(group.get(k), float | int | torch.Tensor)]
    return max(rates) if rates else None


# Where a verified warm-up starts, as a fraction of the rate: the LinearLR(start_factor=0.1) that the rules' fixes
# advise, so that what is proved on a copy is the code the report shows.
WARMUP_START = 0.1


def warmup_factor(step: int, steps: int | None) -> float:
    """The rate's scale at `step` (from 0) under a linear warm-up over `steps`: 1 after it, or without one."""
    if not steps or step >= steps:
        return 1.0
    return WARMUP_START + (1 - WARMUP_START) * step / steps


def scale_lrs(opt, factor: float) -> list | None:
    """Every group's rate times `factor` for one step, on top of any schedule; the rates to put back after the
    step (so that the scheduler goes on from its own), or None where nothing was scaled."""
    if factor == 1.0:
        return None
    held = [g["lr"] for g in opt.param_groups]
    for group, lr in zip(opt.param_groups, held, strict=True):
        group["lr"] = lr * factor
    return held


def restore_lrs(opt, held: list | None) -> None:
    for group, lr in zip(opt.param_groups, held or (), strict=False):
        group["lr"] = lr


def group_lrs(opt) -> list[float]:
    return [lr_value(g.get("lr")) for g in opt.param_groups]


def _plain(value):
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


def weight_precision(opt: torch.optim.Optimizer) -> dict:
    """The optimizer's tensors by dtype, in elements, and the smallest eps of its groups (None without one): a
    float16 weight updated in float16 loses every step under 1/2048 of it, and eps=1e-8 is 0 in float16."""
    dtypes: dict[str, int] = {}
    for group in opt.param_groups:
        for p in group["params"]:
            name = str(p.dtype).removeprefix("torch.")
            dtypes[name] = dtypes.get(name, 0) + p.numel()
    eps = [g["eps"] for g in opt.param_groups if isinstance(g.get("eps"), int | float)]
    return {"dtypes": dtypes, "eps": min(eps) if eps else None}


def not_stepped(opt: torch.optim.Optimizer, model: nn.Module) -> dict[str, str]:
    """Trainable parameters the optimizer will never move, and why: read off its groups, not guessed."""
    group_of = {id(p): g for g in opt.param_groups for p in g["params"]}
    out = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        group = group_of.get(id(p))
        if group is None:
            out[name] = "not in the optimizer"
        elif isinstance(group.get("lr"), int | float) and group["lr"] == 0:
            out[name] = "learning rate 0"
    return out


def adjust(opt: torch.optim.Optimizer, model: nn.Module, *, lr: float | None, add_missing_params: bool,
           settings: dict | None = None) -> None:
    """Optimizer-side fixes that fix verification tries on the probe's own copy; `settings` (eps, betas,
    momentum, weight_decay) replace those every group already has."""
    for group in opt.param_groups:
        for key, value in (settings or {}).items():
            if key in group:
                group[key] = value
    if add_missing_params:
        have = {id(p) for group in opt.param_groups for p in group["params"]}
        missing = [p for p in model.parameters() if p.requires_grad and id(p) not in have]
        if missing:
            opt.add_param_group({"params": missing})
    if lr is not None:
        for group in opt.param_groups:
            group["lr"] = lr


# Where each adaptive optimizer keeps its running second moment (or its analogue), and whether Adam's bias
# correction applies to it. eps is added to the root of it in every one of these.
_SECOND_MOMENT = {"Adam": ("exp_avg_sq", True), "AdamW": ("exp_avg_sq", True), "NAdam": ("exp_avg_sq", True),
                  "RAdam": ("exp_avg_sq", True), "RMSprop": ("square_avg", False), "Adagrad": ("sum", False),
                  "Adamax": ("exp_inf", False)}
_SETTINGS = ("lr", "eps", "betas", "momentum", "weight_decay", "nesterov", "alpha", "dampening")


class OptimizerReadout:
    """The optimizer's settings per group and, for adaptive optimizers, how its eps compares with the root of
    the second moment it divides by, per parameter tensor: the RMS of √v̂ and the share of elements whose √v̂ is
    below eps (where eps, not the gradient, sets the step). The moments go into the replay's device log, so
    they come back in its one read-back."""

    def __init__(self, opt: torch.optim.Optimizer, names: dict[int, str], log, moments: bool = True):
        opt = unwrap(opt)
        self.kind = type(opt).__name__
        self.groups = [{"params": [names[id(p)] for p in g["params"] if id(p) in names],
                        **{k: _plain(g[k]) for k in _SETTINGS if k in g}} for g in opt.param_groups]
        self.which: list[tuple[str, int]] = []
        key, corrected = _SECOND_MOMENT.get(self.kind, (None, False))
        if key is None or not moments:  # under torchrun the state may be sharded: the settings alone
            return
        rows = []
        for group in opt.param_groups:
            eps = group.get("eps")
            if not isinstance(eps, int | float):
                continue
            beta2 = group.get("betas", (0.9, 0.999))[1]
            for p in group["params"]:
                state = opt.state.get(p, {})
                v, step = state.get(key), state.get("step")
                if not isinstance(v, torch.Tensor) or id(p) not in names or v.numel() == 0:
                    continue
                v = v.detach().float()
                if corrected and step is not None:
                    v = v / max(1 - float(beta2) ** float(step), 1e-12)
                root = v.sqrt() if key != "exp_inf" else v.abs()
                rows.append(torch.stack([root.pow(2).mean().sqrt(), (root < eps).float().mean()]))
                self.which.append((names[id(p)], p.numel()))
        if rows:
            log.put("second_moment", torch.stack(rows), 0)

    def evidence(self, host: dict) -> dict:
        values = host["second_moment"][1][0].tolist() if self.which else []
        return {"class": self.kind, "groups": self.groups,
                "second_moment": {n: {"rms_root": r, "eps_share": e, "numel": k}
                                  for (n, k), (r, e) in zip(self.which, values, strict=True)}}


# Where a hand-written LambdaLR schedule is read ahead of the probe: at the probe's length and 10x and 100x it.
LAMBDA_HORIZONS = (1, 10, 100)


def lambda_factors(schedules: list, opt, steps: int) -> list[dict]:
    """Each LambdaLR lambda of `opt`, read at the probe's length and 10x and 100x it: a job runs far past the probe,
    and a warm-up written as `step / warmup` without its cap grows there. A lambda that fails on those steps
    (one that reads state of its own) is left out."""
    out = []
    for ref in schedules:
        scheduler = ref()
        if scheduler is None or getattr(scheduler, "optimizer", None) is not opt:
            continue
        for group, (fn, base) in enumerate(zip(scheduler.lr_lambdas, scheduler.base_lrs, strict=False)):
            at = [steps * k for k in LAMBDA_HORIZONS]
            try:
                factors = [float(fn(k)) for k in at]
            except Exception:  # the user's lambda: whatever it raises, it is not read ahead
                continue
            out.append({"group": group, "base_lr": float(base), "at": at, "factors": factors})
    return out
