"""The observer of a training loop the auditor does not drive: the user's own script, run unchanged.

Everything is seen through PyTorch's own global hooks, never by tracing or rewriting the user's code:
optimizer step hooks mark the steps (the loop's unit of work), `torch.autograd.backward` is wrapped to see
the tensor each backward starts from (the loss), module forward hooks see which model runs, in which mode and
with or without grad, and `GradScaler.scale` and the clipping functions are wrapped to see whether clipping
met scaled gradients. The per-layer measurements are the replay's own: one Observer (auditor/probe/observer.py),
fed from these hooks on the same schedule, so every rule reads the same evidence whichever driver produced it.
Statistics stay on the device; the host keeps only what it knows without asking it (how many backward passes
a step had, whether `.grad` was set, the learning rates, the modes of each forward).
"""

from __future__ import annotations

import sys
import weakref
from dataclasses import dataclass, field

import torch
from torch import nn

from . import checks, lossspy, optim
from .observer import NAN_CHECK_EVERY, Observer
from .script_checks import HELD_STEPS
from .state import copy_model

TARGET_STEPS = 16  # steps whose targets are counted (the loss spy's, see LoopWatch._spy_steps)

# Modules whose behaviour differs between train() and eval(): the ones a mode bug changes.
_MODE_SENSITIVE = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)
# Gradient tensors followed from one step to the next to tell whether they were cleared in between.
_FOLLOWED = 8


@dataclass
class LoopFix:
    """A mechanical fix applied to the script's run through the observer's hooks (from a FixPlan)."""

    zero_grad: bool = False
    train_mode: bool = False
    eval_no_grad: bool = False  # model.eval() around every forward without gradients (validation)
    unscale_before_clip: bool = False
    hold_schedule: bool = False  # every step at the first step's rates: the schedule stepped per epoch
    lr: float | None = None  # the first group's rate at the first step becomes this; the others in proportion
    optimizer_settings: dict | None = None
    clip_grad_norm: float | None = None
    add_missing_params: bool = False
    param_edits: tuple = ()
    lr_sweep: bool = False  # the LR range test on the script: its rates swept exponentially, one per step
    amp: str | None = None  # "bf16": the script's fp16 autocast runs in bfloat16
    scaler_init: float | None = None  # the script's GradScaler starts here (enabled); without one, one is added
    warmup: int | None = None  # the rates ramped up over the first this many steps (optim.warmup_factor)
    clip_max_norm: float | None = None  # the script's own clip_grad_norm_ calls clip at this norm instead


# Backward passes before the first optimizer step after which the script is stopped: its loop has no step to
# observe (an update written by hand). Far above any gradient accumulation in common recipes (nanoGPT's 40), and
# far short of a whole run, which a user would otherwise wait through for the same one-line error.
NO_STEP_LIMIT = 512


class StopScript(BaseException):
    """Raised from the optimizer step hook once the steps asked for are seen. A BaseException, so the script's
    own `except Exception:` cannot swallow it; its `finally:` blocks still run."""


@dataclass
class Forward:
    """One forward of a model the script called at the top level (not a submodule called by another)."""

    step: int  # the optimizer step it belongs to (the number of steps taken before it)
    module: str
    ident: int  # id() of the module, to tell the trained model's forwards from others'
    training: bool  # the model's own flag
    grad: bool  # autograd recording (False under no_grad and inference_mode)
    sensitive: int  # dropout and BatchNorm modules inside it
    sensitive_training: int  # of those, the ones in training mode


@dataclass
class LoopRecord:
    """What the host knows about the loop without asking the device."""

    backwards: list[int] = field(default_factory=list)  # backward passes before each step
    none_at_step: list[int] = field(default_factory=list)  # steps where every .grad was None at step() after a backward
    unreached_at_step: list[int] = field(default_factory=list)  # ... with no zero_grad() since: backward reached none
    carried: list[int] = field(default_factory=list)  # steps whose update carried the previous step's gradients
    checked: int = 0  # steps at which that could be told
    skipped: list[int] = field(default_factory=list)  # per iteration the GradScaler skipped: the step it preceded
    lrs: list[list[float]] = field(default_factory=list)  # each group's learning rate at each step
    forwards: list[Forward] = field(default_factory=list)
    clips: list[dict] = field(default_factory=list)  # {step, scaled, function}
    other_optimizers: dict[str, int] = field(default_factory=dict)  # class name -> steps taken
    players: list[str] = field(default_factory=list)  # every optimizer that stepped, in order of its first step
    stale_optimizer: dict | None = None
    scaler: dict | None = None  # the script's GradScaler: enabled, init_scale
    autocast: str | None = None  # "" (none), "fp16" or "bf16": the first training forward's autocast
    # Batches any DataLoader handed out over the fingerprinted first steps: none where the script trains on its own
    # tensors (full-batch training, a graph's nodes), one where it took a batch once, outside its loop.
    loader_draws: int = 0
    # Of those steps, how many fed the model the very tensor object the step before did: full-batch training
    # passes its data tensor itself; a batch drawn again each step (a seed reset in the loop) is a new tensor.
    same_input_object: int = 0
    # Backward passes whose gradients a zero_grad() cleared before any optimizer stepped on them (outside a step's
    # closure, which re-evaluates on purpose), while the observed steps ran, and the steps they fell in.
    discarded: int = 0
    discarded_at: list[int] = field(default_factory=list)
    no_loss: list[int] = field(default_factory=list)  # steps with no backward since the last: no loss to record


class LoopWatch:
    """Install with `with LoopWatch(steps, stats_every):`, run the user's code inside, then `finish()`."""

    def __init__(self, steps: int, stats_every: int, fix: LoopFix | None = None, experiments: bool = False,
                 optimizer: int = 0):
        self.steps, self.stats_every = steps, stats_every
        # Which optimizer is observed, in the order of their first steps: a GAN's players are audited one per run.
        self.player = optimizer
        self._order: dict[int, int] = {}
        self._others_params: set[int] = set()  # ids of the tensors the other optimizers train
        self.observer = Observer(steps, stats_every)
        self.fix = fix or LoopFix()
        self._edited = False
        self._first_lrs: list[float] | None = None
        self._held: list[float] | None = None  # the script's own rates, put back after a fixed step
        self.log = self.observer.log
        self.record = LoopRecord()
        self.step = 0  # optimizer steps taken so far by the main optimizer
        self.opt: torch.optim.Optimizer | None = None
        self.model: nn.Module | None = None
        self.params = None  # the observer's ParamTracker, once the model is known
        self.table: list = []
        self.tracer = None  # the observer's ActivationTracer
        # For the experiments (auditor/probe/script_checks.py): the model before its first forward, and the first
        # steps' inputs, outputs and loss calls.
        self.experiments = experiments
        self.initial: nn.Module | None = None
        self._initial_id: int | None = None
        self.held: dict[int, tuple] = {}
        self.outputs: dict[int, object] = {}
        self.spy = lossspy.LossSpy(keep_all=experiments, each=self._targets)
        self._target_steps: set[int] = set()
        self.first_loss: torch.Tensor | None = None
        self.first_args = None
        self.nan_stopped = False
        self.no_step_stopped = False
        self.samplers = None  # the SamplerWatch the driver runs beside it
        self.warned = None  # the WarningLog the driver runs beside it
        self._handles: list = []
        self._patched: list[tuple[object, str, object]] = []
        self._depth = 0
        self._candidates: dict[int, nn.Module] = {}  # top-level modules run with grad, by id, in call order
        self._pending: list[torch.Tensor] = []  # losses backpropagated since the last step
        self._backwards = 0
        self._scaled: dict[int, tuple[torch.Tensor, torch.Tensor, object]] = {}  # id(scaled) -> (scaled, loss, scaler)
        self._scalers: list = []
        self._sensitive: dict[int, list[nn.Module]] = {}
        self._stepped: list = []
        self._fingerprinted: set[int] = set()
        self._optimizer_steps = 0  # step() calls of any optimizer, to tell a GradScaler's skipped step
        self._covers: dict[int, bool] = {}
        self._zeroed = False
        self._followed: list | None = None
        self._tracer_on = False
        self._spy_on = False
        self._model_hooks: list = []
        self._evaled: set[int] = set()  # modules the eval-for-validation fix switched, to switch back after
        self._last_loss: torch.Tensor | None = None
        self._sweep = checks.SweepStop() if self.fix.lr_sweep else None
        # Each step's samples, fingerprinted on the device (by module: the model may be known only after its first
        # step), to tell the ones the model has trained on from new ones: where the loader came round, and which
        # of the range test's steps met only new samples.
        self._sample_steps: set[tuple[int, int]] = set()
        self.ranks: dict | None = None  # under torchrun: what each rank saw (auditor/distributed.per_rank)
        self._added_scaler = None  # the fix's GradScaler, for a script that has none
        self._unstepped = 0  # backward passes since any optimizer's step or the last zero_grad()
        self._in_step = 0  # inside an optimizer's step(): a closure's zero_grad and backward belong to it
        self._versions = 0  # the parameters' version counters at the last backward: moved since, its grads were used
        self._cleared_after_backward = False  # a zero_grad() since the last backward: None grads were cleared
        self._last_input = None  # a weak reference to the previous fingerprinted step's input tensor
        self.lambda_schedules: list = []  # weak references to the LambdaLR schedules the script made

    # --- installation -------------------------------------------------------------------------------------
    def __enter__(self):
        from torch.optim import optimizer as opt_mod

        self._handles = [opt_mod.register_optimizer_step_pre_hook(self._pre_step),
                         opt_mod.register_optimizer_step_post_hook(self._post_step),
                         nn.modules.module.register_module_forward_pre_hook(self._global_pre),
                         nn.modules.module.register_module_forward_hook(self._global_post, always_call=True)]
        self._patch(torch.autograd, "backward", self._wrap_backward(torch.autograd.backward))
        self._clip_norm = torch.nn.utils.clip_grad_norm_
        for name in ("clip_grad_norm_", "clip_grad_value_"):
            self._patch(torch.nn.utils, name, self._wrap_clip(getattr(torch.nn.utils, name), name))
        self._patch(torch.amp.GradScaler, "scale", self._wrap_scale(torch.amp.GradScaler.scale))
        self._patch(torch.amp.GradScaler, "step", self._wrap_scaler_step(torch.amp.GradScaler.step))
        for owner in (torch.optim.Optimizer, nn.Module):
            self._patch(owner, "zero_grad", self._wrap_zero_grad(owner.zero_grad))
        if self.fix.amp == "bf16":
            self._patch(torch.amp.autocast, "__init__", _bf16_autocast(torch.amp.autocast.__init__))
        lambda_lr = torch.optim.lr_scheduler.LambdaLR
        self._patch(lambda_lr, "__init__", self._wrap_lambda_init(lambda_lr.__init__))
        iterator = torch.utils.data.dataloader._BaseDataLoaderIter
        self._patch(iterator, "__next__", self._wrap_loader_next(iterator.__next__))
        self.spy.__enter__()
        self._spy_on = True
        return self

    def __exit__(self, *exc):
        self._tracer_off()
        self._spy_off()
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for h in self._model_hooks:
            h.remove()
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._patched.clear()
        return False

    def _wrap_lambda_init(self, original):
        made = self.lambda_schedules

        def __init__(scheduler, *args, **kwargs):
            original(scheduler, *args, **kwargs)
            made.append(weakref.ref(scheduler))
        return __init__

    def _wrap_loader_next(self, original):
        record = self.record

        def __next__(iterator):
            batch = original(iterator)
            if self.step < checks.FINGERPRINT_STEPS:
                record.loader_draws += 1
            return batch
        return __next__

    def _patch(self, owner, name, replacement) -> None:
        self._patched.append((owner, name, getattr(owner, name)))
        setattr(owner, name, replacement)

    def initial_is_model(self) -> bool:
        """Whether the copy taken before the first forward is of the model the observed optimizer trains."""
        return self._initial_id is not None and self._initial_id == id(self.model)

    def measured(self, step: int) -> bool:
        return self.observer.measured(step)

    # --- the model: found from what runs with grad and what the optimizer trains --------------------------
    def _global_pre(self, module, args):
        if self._depth == 0 and torch.is_grad_enabled():
            self._fix_forward(module)
            if id(module) not in self._candidates and any(p.requires_grad for p in module.parameters()):
                self._candidates[id(module)] = module
                if self.experiments and self.initial is None and self.step == 0:
                    self.initial, self._initial_id = copy_model(module), id(module)
                if self.tracer is None and self.step == 0:
                    # The first model to run with grad before any step: traced from its first forward.
                    self._start_tracer(module)
            if self.first_args is None and id(module) in self._candidates:
                self.first_args = args
        if self._depth == 0 and self.model is None:
            self._hold(module, args, {})
            if not torch.is_grad_enabled():
                self._fix_no_grad_forward(module)
            self._note_forward(module, args)
        self._depth += 1

    def _global_post(self, module, args, output):
        self._depth = max(self._depth - 1, 0)
        if self._depth == 0:
            self._model_post(module, args, output)

    def _model_post(self, module, args, output):
        if id(module) == self._initial_id and self.step < HELD_STEPS and torch.is_grad_enabled():
            self.outputs.setdefault(self.step, output)
        if id(module) in self._evaled:
            self._evaled.discard(id(module))
            module.train()

    def _model_pre(self, module, args, kwargs):
        self._hold(module, args, kwargs)
        if torch.is_grad_enabled():
            self._fix_forward(module)
        else:
            self._fix_no_grad_forward(module)
        self._note_forward(module, (*args, *kwargs.values()))

    def _hold(self, module, args, kwargs) -> None:
        if id(module) == self._initial_id and self.step < HELD_STEPS and torch.is_grad_enabled():
            self.held.setdefault(self.step, (args, kwargs))

    def _fix_no_grad_forward(self, module) -> None:
        if self.fix.eval_no_grad and module.training and any(p.requires_grad for p in module.parameters()):
            module.eval()
            self._evaled.add(id(module))

    def _fix_forward(self, module) -> None:
        if not (self.fix.train_mode or (self.fix.param_edits and not self._edited)):
            return  # the path of every audit's first run: nothing to do, checked in no time
        if not any(p.requires_grad for p in module.parameters()):
            return
        if self.fix.train_mode and not module.training:
            module.train()
        if self.fix.param_edits and not self._edited:
            from ..engine import apply_param_edits

            apply_param_edits(module, self.fix.param_edits)
            self._edited = True

    def _note_forward(self, module, args) -> None:
        sens = self._sensitive.get(id(module))
        if sens is None:
            sens = self._sensitive[id(module)] = [m for m in module.modules() if isinstance(m, _MODE_SENSITIVE)]
        grad = torch.is_grad_enabled()
        self.record.forwards.append(Forward(self.step, type(module).__name__, id(module), module.training, grad,
                                            len(sens), sum(m.training for m in sens)))
        if grad and self.record.autocast is None:
            self.record.autocast = _autocast_mode(args)
        if grad and self.step < checks.FINGERPRINT_STEPS and self.model is not None and module is self.model \
                and self.step not in self._fingerprinted:
            self._fingerprinted.add(self.step)  # the step's first forward: accumulation's others are its own batch
            self.log.put("batch_fp", checks.fingerprint(list(args)), self.step)
            first = next((a for a in args if isinstance(a, torch.Tensor)), None)
            if first is not None:
                if self._last_input is not None and self._last_input() is first:
                    self.record.same_input_object += 1
                self._last_input = weakref.ref(first)
        # The model's forward only (a loss module is a top-level module too, fed logits that may be huge).
        model = module is self.model or (self.model is None and id(module) in self._candidates)
        if grad and model and (self.step, id(module)) not in self._sample_steps:
            self._sample_steps.add((self.step, id(module)))
            sums = checks.sample_sums(args)
            if sums is not None:
                self.log.put(f"sample_sums:{id(module)}", sums, self.step)

    def _spy_steps(self) -> int:
        """Steps the loss spy stays on (it sees every torch call, so it is switched off once it has what it is
        for): the first loss call; the experiments' held steps; the targets of enough batches for the label
        rules' floor (its spread is a median deviation over batches; the replay logs 8 in 100 steps)."""
        call = self.spy.call
        counts = call is not None and (call.num_classes or call.kind == "mse")
        return max(1, HELD_STEPS if self.experiments else 1, TARGET_STEPS if counts else 1)

    def _targets(self, kind: str, x: torch.Tensor, y: torch.Tensor) -> None:
        """The step's first training loss call of the script's loss kind: its class counts or its regression
        targets' moments, as the replay logs its batches (auditor/probe/run.py), so that the label rules know the
        floor of a model blind to its input. On each step the spy is on (a bincount, no sync)."""
        first = self.spy.call
        if not torch.is_grad_enabled() or self.step in self._target_steps or first is None or kind != first.kind:
            return
        self._target_steps.add(self.step)
        classes = first.num_classes
        if classes:
            if x.ndim == first.input.ndim and x.shape[first.class_dim] == classes:
                self.log.put("labels", checks.label_counts(y, classes), self.step)
        elif kind == "mse" and y.is_floating_point():
            self.log.put("targets", checks.target_moments(y), self.step)

    def _start_tracer(self, module: nn.Module) -> None:
        self._tracer_off()
        if _compiled(module):
            # The tracer's function mode and global hooks inside a compiled forward make dynamo recompile, and
            # fail: a torch.compile'd model is measured without its activations.
            self.tracer = self.observer.tracer = None
            return
        self.tracer = self.observer.watch(module)
        self.tracer.step = self.step
        if self.measured(self.step):
            self._tracer_on_()

    def _tracer_on_(self) -> None:
        if self.tracer is not None and not self._tracer_on:
            # Modes are a stack: the loss spy, entered first, must be left after the tracer.
            self.tracer.__enter__()
            self._tracer_on = True

    def _tracer_off(self) -> None:
        if self._tracer_on:
            self.tracer.__exit__(None, None, None)
            self._tracer_on = False

    def _spy_off(self) -> None:
        if self._spy_on:
            self._tracer_off()
            self.spy.__exit__(None, None, None)
            self._spy_on = False

    def _choose_model(self, opt) -> None:
        trained = {id(p) for g in opt.param_groups for p in g["params"]}
        best, overlap = None, 0
        for m in self._candidates.values():
            n = sum(1 for p in m.parameters() if id(p) in trained)
            if n > overlap:
                best, overlap = m, n
        if best is None and self._candidates:
            # The optimizer trains none of what runs: an optimizer built for a model instance later replaced. The
            # replacement is the largest model no other optimizer trains (a GAN's other player is trained).
            untrained = [m for m in self._candidates.values()
                         if not any(id(p) in self._others_params for p in m.parameters())]
            best = max(untrained or self._candidates.values(), key=lambda m: sum(p.numel() for p in m.parameters()))
            self.record.stale_optimizer = {
                "model": type(best).__name__,
                "optimizer_tensors": len(trained),
                "model_tensors": sum(1 for p in best.parameters() if p.requires_grad),
                "optimizer_grads": sum(1 for g in opt.param_groups for p in g["params"] if p.grad is not None)}
        if best is None:
            best = _RawParams(opt, main_globals())  # the script's globals name its raw tensors
        self.model = best
        if not _compiled(best) and (self.tracer is None or self.tracer._names.get(id(best)) != ""):
            self._start_tracer(best)  # from the next measured step
            self._tracer_off()
        # From here one hook on the model instead of global ones on every module: unmeasured steps stay on
        # PyTorch's hook-free path for every submodule.
        for h in self._handles[2:]:
            h.remove()
        del self._handles[2:]
        self._model_hooks = [best.register_forward_pre_hook(self._model_pre, with_kwargs=True),
                             best.register_forward_hook(self._model_post, always_call=True)]
        inner = getattr(best, "_orig_mod", best)  # a compiled model's parameters under their own names
        self.params = self.observer.track(inner, list(inner.named_parameters()))
        self.table = self.observer.table
        self.described = optim.describe(opt)  # before a scheduler moves the rate
        # The tensors whose gradients the update includes: the optimizer's own.
        trained_ids = {id(p) for g in opt.param_groups for p in g["params"]}
        self._stepped = [p for _, p, *_ in self.table if id(p) in trained_ids]

    # --- backward, clipping, scaling ----------------------------------------------------------------------
    def _wrap_backward(self, original):
        def backward(tensors, *args, **kwargs):
            self._on_backward(tensors)
            return original(self._fix_scale(tensors), *args, **kwargs)
        return backward

    def _fix_scale(self, tensors):
        """The scaler_init fix on a script without a GradScaler: its loss scaled as GradScaler.scale would, by a
        scaler of the fix's own, unscaled before clipping or the step (and the step skipped on inf/NaN)."""
        if self.fix.scaler_init is None or self._scalers and self._added_scaler is None:
            return tensors  # no fix, or the script's own scaler, which the fix set up in scale()
        if not isinstance(tensors, torch.Tensor) or not tensors.is_floating_point() or id(tensors) in self._scaled:
            return tensors
        if self._added_scaler is None:
            self._added_scaler = torch.amp.GradScaler(tensors.device.type, init_scale=self.fix.scaler_init)
            self._scalers.append(self._added_scaler)
            self.record.scaler = {"enabled": True, "init_scale": self.fix.scaler_init}
        return self._added_scaler.scale(tensors)

    def _unscale_added(self, opt) -> bool:
        """Unscale the added scaler's gradients for `opt` once a step; True when they hold inf/NaN."""
        from torch.amp.grad_scaler import OptState

        scaler = self._added_scaler
        if scaler is None or opt is None:
            return False
        state = scaler._per_optimizer_states[id(opt)]
        if state["stage"] is not OptState.UNSCALED:
            scaler.unscale_(opt)
        return bool(sum(float(v.item()) for v in state["found_inf_per_device"].values()))

    def _on_backward(self, tensors) -> None:
        t = tensors if isinstance(tensors, torch.Tensor) else (tensors[0] if tensors else None)
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            return
        scaled = self._scaled.pop(id(t), None)
        loss = scaled[1] if scaled is not None and scaled[0] is t else t
        value = loss.detach()
        # Kept as it comes (a 0-d tensor on the device): the read-back converts, so a step costs no extra kernel.
        self._pending.append(value if value.ndim == 0 else value.float().mean())
        if self.first_loss is None:
            self.first_loss = self._pending[-1]
        if self._backwards == 0 and self.fix.zero_grad:
            for p in self._fix_params():
                p.grad = None
        self._backwards += 1
        self._unstepped += 1
        self._versions = self._param_versions()
        self._cleared_after_backward = False
        if self.step == 0 and self._backwards >= NO_STEP_LIMIT and not self.record.skipped:
            self.no_step_stopped = True
            raise StopScript(f"{self._backwards} backward passes without an optimizer step")

    def _fix_params(self) -> list:
        if self.opt is not None:
            return [p for g in self.opt.param_groups for p in g["params"]] + [p for _, p, *_ in self.table]
        return [p for m in self._candidates.values() for p in m.parameters()]

    def _note_zero_grad(self, owner) -> None:
        """A zero_grad() call that covers the main optimizer's tensors clears what the next update would carry."""
        if not self._stepped:  # before the first step: nothing to carry yet
            return
        covers = self._covers.get(id(owner))
        if covers is None:
            params = [p for g in owner.param_groups for p in g["params"]] if isinstance(
                owner, torch.optim.Optimizer) else list(owner.parameters())
            stepped = {id(p) for p in self._stepped}
            covers = self._covers[id(owner)] = any(id(p) in stepped for p in params)
        if covers:
            self._zeroed = True

    def _param_versions(self) -> int:
        return sum(p._version for p in self._fix_params())

    def _note_discard(self, caller) -> None:
        """Backward passes cleared with no step between are thrown away, unless something used their gradients to
        move the weights first: SAM's ascent step (an optimizer's own method that clears them after, or a loop
        that perturbs the weights in place), which an optimizer step hook cannot see. Only read where such passes
        exist: a loop's every-step zero_grad() after its step costs nothing here."""
        if not self._unstepped:
            return
        # An optimizer's own method (SAM's first_step(zero_grad=True)) is its algorithm; a wrapper's own zero_grad
        # that delegates (accelerate's AcceleratedOptimizer) is not.
        by_optimizer = caller.f_code.co_name != "zero_grad" and isinstance(caller.f_locals.get("self"),
                                                                          torch.optim.Optimizer)
        used = by_optimizer or self._param_versions() != self._versions
        if not self._in_step and not used and self.step < self.steps:
            self.record.discarded += self._unstepped
            if len(self.record.discarded_at) < 20:
                self.record.discarded_at.append(self.step)
        self._unstepped = 0

    def _follow_grads(self) -> None:
        """After a step: weak references to a few of the stepped tensors' gradients. If the same tensors are still
        there at the next step and no zero_grad() covered them, the next update carries this one's gradients."""
        self._zeroed = False
        self._followed = [(p, weakref.ref(p.grad)) for p in self._stepped if p.grad is not None][:_FOLLOWED]

    def _carried_over(self) -> bool | None:
        if self._followed is None:
            return None
        if self._zeroed:
            return False
        return all(p.grad is not None and ref() is p.grad for p, ref in self._followed) and bool(self._followed)

    def _wrap_zero_grad(self, original):
        watch = self

        def zero_grad(owner, *args, **kwargs):
            if watch.fix.zero_grad and watch._backwards:
                return None  # the fix clears them at the next step's first backward instead
            watch._cleared_after_backward = True
            watch._note_zero_grad(owner)
            watch._note_discard(sys._getframe(1))
            return original(owner, *args, **kwargs)
        return zero_grad

    def _wrap_scaler_step(self, original):
        """A GradScaler step that never reaches optimizer.step() was skipped for inf/NaN gradients: counted, and
        counted towards --steps, so a run that overflows at every iteration is stopped too."""
        watch = self

        def step(scaler, optimizer, *args, **kwargs):
            before = watch._optimizer_steps
            result = original(scaler, optimizer, *args, **kwargs)
            watch._unstepped = 0  # a step skipped for inf/NaN discards its gradients by design
            if scaler.is_enabled() and watch._optimizer_steps == before and \
                    (optimizer is watch.opt or (watch.opt is None and watch.player == 0)):
                watch.record.skipped.append(watch.step)
                watch._pending.clear()  # the skipped iteration's loss trained nothing
                watch._backwards = 0
                if watch.step + len(watch.record.skipped) >= watch.steps:
                    raise StopScript(f"stopped after {watch.step} optimizer steps and "
                                     f"{len(watch.record.skipped)} iterations the GradScaler skipped")
            return result
        return step

    def _wrap_scale(self, original):
        watch = self

        def scale(scaler, outputs):
            if watch.fix.scaler_init is not None and getattr(scaler, "_scale", None) is None:
                if scaler.is_enabled():
                    scaler._init_scale = watch.fix.scaler_init  # read at its lazy start, in this call
                else:  # GradScaler(enabled=False) keeps no state: made again, enabled
                    torch.amp.GradScaler.__init__(scaler, scaler._device, init_scale=watch.fix.scaler_init)
            result = original(scaler, outputs)
            if isinstance(outputs, torch.Tensor) and isinstance(result, torch.Tensor):
                watch._scaled[id(result)] = (result, outputs, scaler)
            if not any(s is scaler for s in watch._scalers):
                watch._scalers.append(scaler)
                watch.record.scaler = {"enabled": bool(scaler.is_enabled()),
                                       "init_scale": float(getattr(scaler, "_init_scale", 0.0) or 0.0)}
            return result
        return scale

    def _wrap_clip(self, original, name: str):
        def clip(parameters, *args, **kwargs):
            parameters = list(parameters) if not isinstance(parameters, torch.Tensor) else [parameters]
            # The script clips real gradients: the fix's own scale must be out first.
            if self._added_scaler is not None and self.opt is not None:
                self._unscale_added(self.opt)
            elif self._added_scaler is not None:  # before the first step: the optimizer is found from its tensors
                self._unscale(parameters)
            scaled = self._clip_scaled()
            if scaled and self.fix.unscale_before_clip:
                self._unscale(parameters)
                scaled = self._clip_scaled()
            record = {"step": self.step, "function": name, "scaled": scaled}
            if name == "clip_grad_norm_":
                if self.fix.clip_max_norm is not None:  # clip-too-tight's fix: the script's own call, looser
                    args, kwargs = (args[:0], {**kwargs, "max_norm": self.fix.clip_max_norm}) if not args else (
                        (self.fix.clip_max_norm, *args[1:]), kwargs)
                max_norm = args[0] if args else kwargs.get("max_norm")
                record["max_norm"] = float(max_norm) if isinstance(max_norm, int | float) else None
            result = original(parameters, *args, **kwargs)
            if isinstance(result, torch.Tensor) and self.step < self.steps:
                record["norm"] = result.detach()  # the norm before clipping, on the device: read back once, at the end
            self.record.clips.append(record)
            return result
        return clip

    def _unscale(self, parameters) -> None:
        """The fix for clip-before-unscale: scaler.unscale_(optimizer) for the optimizer of these parameters."""
        import gc

        ids = {id(p) for p in parameters}
        # type(), not isinstance(): the heap holds weakref proxies whose object is gone, and isinstance() asks a
        # proxy for its __class__, which raises ReferenceError (in the script's own clip call, failing it).
        opts = [self.opt] if self.opt is not None else [
            o for o in gc.get_objects() if issubclass(type(o), torch.optim.Optimizer)]
        for opt in opts:
            if any(id(p) in ids for g in opt.param_groups for p in g["params"]):
                for scaler in self._scalers:
                    if scaler.is_enabled():
                        scaler.unscale_(opt)
                return

    def _clip_scaled(self) -> bool:
        """Whether an enabled GradScaler had scaled this step's gradients and not yet unscaled them."""
        from torch.amp.grad_scaler import OptState

        for scaler in self._scalers:
            if not scaler.is_enabled():
                continue
            states = getattr(scaler, "_per_optimizer_states", {})
            if not any(s.get("stage") is OptState.UNSCALED for s in states.values()):
                return True
        return False

    # --- the step ------------------------------------------------------------------------------------------
    def _pre_step(self, opt, args, kwargs):
        self._optimizer_steps += 1
        self._unstepped = 0
        self._in_step += 1
        closure = kwargs.get("closure", args[0] if args else None)
        if not callable(closure):
            self._before_update(opt)
            return None
        # step(closure): the forward and backward run inside step() (Lightning's automatic optimization, LBFGS).
        # The update's evidence is taken once the closure has run, before the optimizer applies it.
        ran = []

        def measured_closure():
            result = closure()
            if not ran:
                ran.append(True)
                self._before_update(opt)
            return result
        if "closure" in kwargs:
            return args, {**kwargs, "closure": measured_closure}
        return (measured_closure, *args[1:]), kwargs

    def _before_update(self, opt) -> None:
        if id(opt) not in self._order:
            self._order[id(opt)] = len(self._order)
            self.record.players.append(type(opt).__name__)
            if self._order[id(opt)] != self.player:
                self._others_params |= {id(p) for g in opt.param_groups for p in g["params"]}
        if self.opt is None and self._order[id(opt)] == self.player:
            self.opt = opt
            self._choose_model(opt)
        if opt is self.opt and self.step >= self._spy_steps() - 1:
            self._spy_off()
        if opt is not self.opt:
            key = type(opt).__name__
            self.record.other_optimizers[key] = self.record.other_optimizers.get(key, 0) + 1
            # The losses and backward passes behind another optimizer's step (a GAN's other player) are its own.
            self._pending.clear()
            self._backwards = 0
            return
        self._tracer_off()
        if self._unscale_added(opt):
            for p in self._fix_params():
                p.grad = None  # as GradScaler.step skips it: no tensor with a gradient, no update
        step = self.step
        self.record.backwards.append(self._backwards)
        carried = self._carried_over()
        if carried is not None:
            self.record.checked += 1
            if carried:
                self.record.carried.append(step)
        if self._backwards and all(p.grad is None for p in self.params.params):
            # Cleared by a zero_grad() after the backward, or never reached by it (a loss rebuilt from .item()):
            # the second is weights-not-updating's, not a misplaced zero_grad.
            (self.record.none_at_step if self._cleared_after_backward else self.record.unreached_at_step).append(step)
        if self._pending:
            loss = self._pending[0] if len(self._pending) == 1 else torch.stack(self._pending).mean()
            self.observer.loss(step, loss)
            self._last_loss = loss
        else:
            self.record.no_loss.append(step)  # the curve's gap there is no NaN the loss produced
        self._pending.clear()
        for scaler in self._scalers[:1]:
            scale = getattr(scaler, "_scale", None)
            if isinstance(scale, torch.Tensor) and scaler.is_enabled():
                self.log.put("amp_scale", [scale.reshape(())], step)
        self.params.after_backward(step, self.measured(step))
        self._fix_step(opt)
        self.record.lrs.append(optim.group_lrs(opt))

    def _fix_step(self, opt) -> None:
        fix = self.fix
        if self._first_lrs is None:
            self._first_lrs = [g["lr"] for g in opt.param_groups]
            for group in opt.param_groups:
                for key, value in (fix.optimizer_settings or {}).items():
                    if key in group:
                        group[key] = value
            if fix.add_missing_params:
                have = {id(p) for g in opt.param_groups for p in g["params"]}
                missing = [p for p in self.model.parameters() if p.requires_grad and id(p) not in have]
                if missing:
                    opt.add_param_group({"params": missing, "lr": opt.param_groups[0]["lr"]})
                    self._first_lrs.append(opt.param_groups[0]["lr"])
        if fix.lr is not None or fix.hold_schedule or fix.lr_sweep:
            self._held = [g["lr"] for g in opt.param_groups]
            base = self._first_lrs if fix.hold_schedule or fix.lr_sweep else self._held
            target = checks.sweep_rate(self.step) if fix.lr_sweep else fix.lr
            if target is not None and not self._first_lrs[0]:
                base, factor = [1.0] * len(base), target  # a first group at rate 0: every group at the rate asked
            else:
                factor = target / self._first_lrs[0] if target is not None else 1.0
            for group, lr in zip(opt.param_groups, base, strict=False):
                group["lr"] = lr * factor
        warmed = optim.scale_lrs(opt, optim.warmup_factor(self.step, fix.warmup))
        if self._held is None:  # the rate fix above, where there is one, holds the script's own rates already
            self._held = warmed
        if fix.clip_grad_norm is not None:  # after the gradients were measured, as the replay clips
            self._clip_norm(list(self.model.parameters()), fix.clip_grad_norm)

    def _post_step(self, opt, args, kwargs) -> None:
        self._in_step = max(self._in_step - 1, 0)
        self._unstepped = 0
        if opt is not self.opt:
            return
        if self._added_scaler is not None:
            self._added_scaler.update()
        if self._held is not None:  # the script's scheduler goes on from its own rates
            optim.restore_lrs(opt, self._held)
            self._held = None
        self.params.after_step(self.step)
        self._follow_grads()
        self.step += 1
        self.spy.step = self.step
        if self.step >= HELD_STEPS:
            self.spy.keep_all = False  # the experiments' calls (each holds the model's output) are all taken
        self._backwards = 0
        self._depth = 0
        if self.step >= self.steps:
            self.ranks = _per_rank(self)  # now: the script's `finally:` may destroy its process group
            raise StopScript(f"stopped after {self.step} optimizer steps, as asked")
        if self._sweep is not None and self._last_loss is not None and self._sweep.done(float(self._last_loss)):
            raise StopScript(f"the LR range test stopped at step {self.step}: the loss blew up")
        if self.step % NAN_CHECK_EVERY == 0 and self._last_loss is not None \
                and not bool(torch.isfinite(self._last_loss).item()):
            self.nan_stopped = True
            raise StopScript(f"stopped at step {self.step}: the loss is not finite")
        if self.tracer is not None:
            self.tracer.step = self.step
            if self.measured(self.step):
                self._tracer_on_()


def _per_rank(watch: LoopWatch) -> dict | None:
    """Under torchrun, the script's own process group: every rank's batch fingerprints, parameter norms and
    gradient norms, for the rank rules. Every rank stops at the same step, so each takes part."""
    import torch.distributed as dist

    from ..distributed import Dist, per_rank

    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() < 2:
        return None
    model = watch.model
    inner = getattr(model, "module", model)
    params = list(inner.parameters())
    strategy = "ddp" if isinstance(model, nn.parallel.DistributedDataParallel) else \
        "fsdp" if params and hasattr(params[0], "to_local") else "none"
    device = params[0].device if params else torch.device("cpu")
    d = Dist(dist.get_rank(), dist.get_world_size(), strategy, dist.get_backend(), device, None)
    try:
        return per_rank(d, inner, watch.log, checks.FINGERPRINT_STEPS)
    except Exception:  # a group the script set up in its own way: the rank rules go without, not the audit
        return None


def _bf16_autocast(original):
    """The amp fix on a script: its fp16 autocast (asked for, or CUDA's default) runs in bfloat16 instead."""

    def __init__(self, device_type, dtype=None, *args, **kwargs):
        if dtype is torch.float16 or (dtype is None and device_type == "cuda"):
            dtype = torch.bfloat16
        original(self, device_type, dtype, *args, **kwargs)
    return __init__


def _compiled(module: nn.Module) -> bool:
    return hasattr(module, "_orig_mod") and type(module).__name__ == "OptimizedModule"


def _autocast_mode(args) -> str:
    device = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
    if device not in ("cpu", "cuda") or not torch.is_autocast_enabled(device):
        return ""
    dtype = torch.get_autocast_dtype(device)
    return {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "")


class _RawParams(nn.Module):
    """The optimizer's tensors under the names the script gave them (`W1`, `b1`), for a loop that trains raw
    tensors without an nn.Module, as the makemore lectures do."""

    def __init__(self, opt, names_from: dict | None):
        super().__init__()
        by_id = {}
        for key, value in (names_from or {}).items():
            if isinstance(value, torch.Tensor) and not key.startswith("_"):
                by_id.setdefault(id(value), key)
        for i, p in enumerate(p for g in opt.param_groups for p in g["params"]):
            name = by_id.get(id(p), f"param{i}")
            if not isinstance(p, nn.Parameter):
                # A leaf tensor with requires_grad: registered as itself, not copied, so its .grad is the script's.
                self._parameters[name] = p
            else:
                self.register_parameter(name, p)


def main_globals() -> dict:
    main = sys.modules.get("__main__")
    return vars(main) if main is not None else {}
