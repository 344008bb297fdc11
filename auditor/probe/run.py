"""Step 2 of the data flow: replay a short stretch of training on a copy of the model and measure it."""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .. import distributed, interrupt
from ..config import DEFAULT_STATS_EVERY, DEFAULT_STEPS  # noqa: F401  (re-exported: api, integrations)
from ..errors import AuditError, from_user_exception
from ..evidence import Evidence, ProbeInfo
from ..interrupt import Stopped
from ..load import UserSetup
from ..progress import Progress, as_progress
from . import amp as mixed
from . import checks, lossspy, optim
from .batches import BatchStream, LossComputer, expected_initial_loss, tensors
from .devicelog import DeviceLog, stacked
from .lossspy import LossCall
from .observer import NAN_CHECK_EVERY, Observer, peak_lr
from .optim import DEFAULT_OPTIMIZER
from .samplers import SamplerWatch
from .snapshot import Snapshot, checked_device, resetter
from .spill import give_back_heap
from .state import copy_model, preserved_rng, replayed_rng, seed_everything, torch_rng_state
from .structure import StructureTracer, dropout_rates, structure_hash
from .warnlog import WarningLog

INIT_BATCHES = 4


@dataclass
class ProbeOptions:
    steps: int = DEFAULT_STEPS
    seed: int = 0
    device: str | None = None
    stats_every: int = DEFAULT_STATS_EVERY
    checks: bool = True  # the experiments beyond the replay (overfit one batch, LR range test, ...)
    # Set by fix verification to try an optimizer-side fix on the probe's own copy of the optimizer.
    clip_grad_norm: float | None = None
    lr: float | None = None  # every parameter group's learning rate
    optimizer_settings: dict | None = None  # set by fix verification: eps, momentum, ... for every group
    add_missing_params: bool = False  # trainable parameters the optimizer left out get a group of their own
    # The command line's choice: an exception in the user's code after the first step, or a signal, ends the
    # probe with what it measured (a partial report) instead of losing it.
    keep_partial: bool = False
    # Under torchrun (auditor.distributed.Dist): the replay runs wrapped on every rank; experiments on rank 0.
    dist: object = None
    # Train the caller's model itself and restore it from a host snapshot (auditor/probe/snapshot.py).
    in_place: bool = False
    amp: str | None = None  # bf16 | fp16 (auditor/probe/amp.py); None: model.py's `amp`, else float32
    scaler_init: float | None = None  # set by fix verification: the GradScaler's init_scale
    float32_modules: tuple[str, ...] = ()  # set by fix verification: modules kept outside autocast
    scheduler_every: int | None = None  # set by fix verification: the scheduler stepped once every N steps
    warmup: int | None = None  # set by fix verification: the rate ramped up over N steps (optim.warmup_factor)
    purpose: str = "replaying training"  # what a timeout or signal message says the audit was doing


def _model_device(model: nn.Module, override: str | None, d=None) -> torch.device:
    if d is not None:
        return d.device
    if override:
        try:
            return torch.device(override)
        except RuntimeError as exc:
            raise AuditError(f"--device {override!r} is not a device torch knows: {exc}") from None
    return next(model.parameters()).device


def run_probe(setup: UserSetup, options: ProbeOptions | None = None, optimizer=None,
              progress: Progress | Callable[[int], None] | None = None, scheduler=None,
              snapshot: Snapshot | None = None, edit: Callable[[nn.Module], None] | None = None) -> Evidence:
    """`optimizer` and `scheduler` are the caller's own instances, or None: the probe trains copies. In place
    (`options.in_place`), the probe trains `setup.model` itself from `snapshot` (taken here when None) with
    `edit` applied, and leaves it as the snapshot holds it."""
    options = options or ProbeOptions()
    progress = as_progress(progress)
    if options.steps < 1:
        raise AuditError(f"--steps must be at least 1, got {options.steps}")
    if options.stats_every < 1:
        raise AuditError(f"--stats-every must be at least 1, got {options.stats_every}")
    d = options.dist
    device = _model_device(setup.model, options.device, d)
    if not options.in_place:
        return _run(setup, options, optimizer, progress, scheduler, device, None)
    if d is not None:
        raise AuditError("--in-place is not available under torchrun yet: the wrapped model's hooks and sharded "
                         "parameters would outlive the probe; each rank's copy is already 1/N of the model with "
                         "--strategy fsdp")
    checked_device(setup.model, device)
    own = snapshot is None
    if own:
        snapshot = Snapshot(setup.model, optim.unwrap(optimizer) if optimizer is not None else None)
        snapshot.release_optimizer_state()
    try:
        return _run(setup, options, optimizer, progress, scheduler, device, (snapshot, resetter(snapshot, edit)))
    finally:
        if own:
            snapshot.restore()


def _run(setup, options, optimizer, progress, scheduler, device, in_place) -> Evidence:
    d = options.dist
    started = time.perf_counter()
    with preserved_rng(device):
        seed_everything(options.seed)
        if in_place is None:
            model = copy_model(setup.model).to(device)
            model.train()
            initial = copy_model(model) if options.checks else None  # the experiments start from the same init

            def fresh():
                return copy_model(initial)

            def build(m):
                return optim.build(setup, m, optimizer)
        else:
            snapshot, fresh = in_place
            model = fresh()
            model.train()

            def build(m):
                opt, default = optim.build(setup, m, optimizer)
                if snapshot.optimizer_state is not None:  # the caller's state, back from the host
                    opt.load_state_dict(copy.deepcopy(snapshot.optimizer_state))
                return opt, default
        net = model
        if d is not None:  # before the optimizer: FSDP2 replaces the parameters it shards
            net, model = distributed.wrap(model, d, setup.wrap, setup.model_file)
        opt, opt_default = build(model)
        optim.adjust(opt, model, lr=options.lr, add_missing_params=options.add_missing_params,
                     settings=options.optimizer_settings)
        sched = optim.build_scheduler(setup, opt, optimizer, scheduler)
        notes = _optimizer_notes(setup, optimizer, sched, opt_default)
        if sched is not None and optim.scheduler_needs_metric(sched):
            sched = None
        if sched is not None and options.lr is not None and hasattr(sched, "base_lrs"):
            sched.base_lrs = [options.lr] * len(sched.base_lrs)  # an LR fix moves the whole schedule
        losses = LossComputer(setup.loss_fn, setup.training_step, setup.model_file, setup.data_file)
        amp = mixed.Amp(options.amp or setup.amp, device, setup.make_grad_scaler, options.scaler_init,
                        setup.model_file, options.float32_modules)
        if amp.scaler is not None and optim.needs_closure(opt):
            raise AuditError(f"{type(opt).__name__} re-evaluates the loss inside step(), which a GradScaler cannot "
                             "unscale: audit it in bf16 or float32")
        progress.phase("replay", options.steps)
        interrupt.doing(options.purpose)
        # Warnings the user's code raises are recorded through the experiments too, which run the same code.
        warned = WarningLog()
        with amp.kept_float32(model), SamplerWatch() as samplers, warned:
            evidence, stream, held = _probe(setup, options, net, model, opt, sched, losses, device, started,
                                            progress, amp, samplers.new_epoch, warned)
        evidence.samplers = samplers.records()
        evidence.warnings = warned.records
        evidence.probe.optimizer_default = opt_default
        evidence.probe.notes[:0] = notes
        if d is not None:
            evidence.probe.notes.append(
                f"replayed on {d.world} ranks ({d.strategy}, {d.backend}); statistics averaged over ranks"
                + ("; the experiments ran on rank 0 alone, unwrapped" if options.checks else ""))
        # The replay's model, gradients and optimizer state are not needed by the experiments: give their memory
        # back before the experiments take their own.
        del net, model, opt, sched
        if (options.checks and evidence.probe.steps_run and not evidence.probe.partial_reason
                and (d is None or d.main)):
            progress.phase("experiments", len(checks.EXPERIMENTS))
            interrupt.doing(f"{options.purpose}: the experiments after the replay (overfit one batch, LR range)")
            try:
                if d is not None:
                    interrupt.undefer()  # rank 0 is alone from here: a signal stops it where it lands
                warned.step = None
                with warned:
                    _experiments(setup, evidence, fresh, lambda m: _with_settings(build(m)[0], options), losses,
                                 stream, held, progress)
                if amp.mode == "fp16":
                    _precision(setup, evidence, fresh, losses, held, amp, device)
            except Stopped as stop:
                mark_partial(evidence, stop.reason, stop.exit_code)
        evidence.probe.seconds = time.perf_counter() - started
        return evidence


def _optimizer_notes(setup: UserSetup, optimizer, sched, opt_default: bool) -> list[str]:
    notes = []
    if opt_default:
        notes.append(f"no make_optimizer() in {setup.model_file}: probed with the default {DEFAULT_OPTIMIZER}")
    hooks = optim.hooks_left_out(optimizer) if optimizer is not None else 0
    if hooks:
        notes.append(f"the optimizer's {hooks} step hook(s) were not run in the probe: they may act on your own "
                     "objects")
    if sched is not None and optim.scheduler_needs_metric(sched):
        notes.append(f"{type(sched).__name__} steps on a validation metric once an epoch: the probe keeps the "
                     "learning rate it starts with")
    elif sched is not None:
        notes.append(f"learning rate scheduled by {type(sched).__name__}, stepped after every optimizer step")
    return notes


def _with_settings(opt, options: ProbeOptions):
    """The experiments' optimizers carry a verified fix's settings (eps, momentum) as the replay's does."""
    optim.adjust(opt, None, lr=None, add_missing_params=False, settings=options.optimizer_settings)
    return opt


def _experiments(setup, ev: Evidence, fresh, build, losses: LossComputer, stream: BatchStream, held: list,
                 progress: Progress) -> None:
    def compute(m, batch):
        try:
            return losses(m, batch)[0]
        except AuditError:
            raise
        except Exception as exc:
            raise from_user_exception(exc, f"running the model from {setup.model_file} in the auditor's "
                                           "experiments") from None

    checks.run_experiments(ev, fresh, build, losses, compute, stream, held, progress.update)


def _precision(setup, ev: Evidence, fresh, losses: LossComputer, held: list, amp: mixed.Amp, device) -> None:
    """fp16's flushed and overflowing values on the first batch, at the scale the replay ended with."""
    scales = ev.amp["scales"]
    scale = float(scales[-1]) if len(scales) and np.isfinite(scales[-1]) else 1.0
    try:
        model = fresh()
        with amp.kept_float32(model):
            ev.amp["precision"] = mixed.precision(model, held[0], lambda m, b: losses(m, b)[0], amp, scale, device)
    except AuditError as exc:
        ev.probe.notes.append(f"the fp16 precision check could not run on this model: {exc}")
    except Exception as exc:
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        ev.probe.notes.append(f"the fp16 precision check could not run on this model: {first_line}")


def _probe(setup, options, net, model, opt, sched, losses, device, started, progress, amp, on_new_epoch,
           warned: WarningLog) -> tuple[Evidence, BatchStream, list]:
    """The training replay. Returns the evidence, the batch stream (where the replay left it) and the
    batches it holds on the device, for the experiments that follow. `net` runs forward and backward (a
    DDP or FSDP2 wrapper under torchrun); `model` is the user's module inside it, which the hooks watch."""
    replay = _Replay(setup, options, net, model, losses, device, amp, on_new_epoch)
    replay.start()
    replay.train(opt, sched, progress, warned)
    return replay.evidence(opt, started), replay.stream, replay.init_batches


class _Replay:
    """The replay driver: it runs the user's model, loss, optimizer and schedule, and tells its Observer what
    happened at each step; the Observer measures (auditor/probe/observer.py). Three phases: start() (the loss at
    initialisation, before any update), train() (the steps), evidence() (one read-back from the device)."""

    def __init__(self, setup, options, net, model, losses: LossComputer, device, amp: mixed.Amp, on_new_epoch):
        self.setup, self.options, self.net, self.model, self.losses = setup, options, net, model, losses
        self.device, self.amp, self.d = device, amp, options.dist
        self.observer = Observer(options.steps, options.stats_every)
        self.log = self.observer.log
        self.stream = BatchStream(setup.train_loader, device, setup.data_file, on_new_epoch=on_new_epoch)
        self.first = self.stream.next()
        self.what = f"running the model from {setup.model_file} on a batch from {setup.data_file}"
        if amp.mode is not None:  # some kernels exist in float32 only (oneDNN's LSTM in fp16 on the CPU): say so
            self.what += f" under {amp.mode} autocast on {device.type}"
        self.steps_run = 0
        self.stopped: tuple[str, int] | None = None  # (why, exit code) when the replay ended early, evidence kept
        self.lrs: list[list[float]] = []  # each group's rate at each step, as the step used it

    def compute(self, batch):
        losses = self.losses
        try:
            with self.amp.autocast():
                return losses(self.net, batch)
        except AuditError:
            raise
        except Exception as exc:
            if losses.choice is not None and losses.choice.num_classes and losses.training_step is None:
                # Checked only on failure on the CPU (an out-of-range target raises there); the clear message
                # names the labels instead of cross_entropy's internals.
                losses.check_targets(batch, losses.choice.num_classes, on_device=True)
            raise from_user_exception(exc, self.what) from None

    # --- before any update ----------------------------------------------------------------------------------

    def start(self) -> None:
        """The loss at initialisation over a few batches, the model's structure and the loss it computes."""
        losses, stream, model, first = self.losses, self.stream, self.model, self.first
        self.init_batches = [first]
        self.named = list(model.named_parameters())  # before any forward: see param_table
        losses.spy = True
        with torch.no_grad(), checks.ModelInputs(model) as seen:
            with StructureTracer(model) as structure:
                loss0, out0 = self.compute(first)
            structure.mark_output(out0, losses.spied[0].input if losses.spied else None)
            structure.name_output_params(model)
            choice = losses.choice
            if choice.num_classes and self.device.type == "cuda":
                # On CUDA an out-of-range target is a device-side assert that kills the process: check each batch
                # on the loader's host copy first, which costs the GPU nothing.
                stream.check = lambda b: losses.check_targets(b, choice.num_classes)
            init_losses, outputs = [loss0.detach().float()], [out0]
            for _ in range(INIT_BATCHES - 1):
                batch = stream.next()
                if batch is None:
                    break
                self.init_batches.append(batch)
                loss_i, out_i = self.compute(batch)
                init_losses.append(loss_i.detach().float())
                outputs.append(out_i)
        losses.spy = False
        # Summarised now, so that the tensors the model received are not kept: what input-scale reads.
        self.input_stats = checks.input_stats(seen, checks.plain_inputs(self.init_batches, losses))
        self.structure, self.outputs = structure, outputs
        self.raw_init = init_losses  # as the loss curve measures them, where the view's are per element
        self.view = view = _loss_view(losses, self.init_batches, init_losses, outputs)
        plain_batches = losses.training_step is None and isinstance(first, list | tuple)
        self.classes = view.num_classes if view.name == "cross_entropy" and plain_batches else None
        self.regression = view.name == "mse" and plain_batches
        # A training_step (a Hugging Face model computing its own loss from `labels`) hides the targets: the
        # cross-entropy call itself shows them, spied on the measured steps only (a TorchFunctionMode costs per op).
        self.spied_classes = view.num_classes if view.name == "cross_entropy" and not plain_batches else None
        # The same experiment as after the probe, on the untrained model: a model that ignores its input from the
        # start has a structural bug, one that learns to ignore it was driven there by training.
        with preserved_rng(self.device):  # dropout draws in it must not shift the replay's random stream
            self.zeroed_init, _ = _zeroed(self.net, self.init_batches, self.compute)

    # --- the steps ------------------------------------------------------------------------------------------

    def train(self, opt, sched, progress, warned: WarningLog) -> None:
        options, d, setup = self.options, self.d, self.setup
        val_batches = _val_batches(setup, self.device) if options.checks else []
        val_steps = {0, options.steps // 4, options.steps // 2, 3 * options.steps // 4, options.steps - 1}
        self.tracer = tracer = self.observer.watch(self.model)
        self.described = optim.describe(opt)  # before a scheduler moves the rate
        self.not_stepped = optim.not_stepped(opt, self.model)
        take_step = optim.stepper(opt)
        # Ranks must leave the loop together: one that stops while the others wait in a collective hangs them
        # all. A sized loader is re-iterable and never runs out; only a one-shot iterator asks the ranks each step.
        loader_ranks = d if not hasattr(setup.train_loader, "__len__") else None
        # In place on the CPU the freed heap is handed back every step (spill.give_back_heap; ~5 ms on a
        # 34M-parameter model): memory is that mode's purpose. A copying probe does not: malloc_trim walks the
        # whole heap, ~0.7 ms a call beside torch and the report libraries, which on measured steps alone took
        # the makemore MLP's probe from 1.40x to 1.60x its plain step (bench/bench_probe.py, 2026-12-03).
        trim = self.device.type == "cpu" and options.in_place
        self.loop_started = time.perf_counter()
        try:
            pending = list(self.init_batches)
            for step in range(options.steps):
                batch = pending.pop(0) if pending else self.stream.next()
                if not distributed.agree(loader_ranks, batch is not None):
                    break
                measure = self.observer.measured(step)
                tracer.step = warned.step = step
                opt.zero_grad(set_to_none=True)
                if val_batches and step in val_steps:
                    _val_loss(self.net, val_batches, self.compute, self.log, step)
                self._log_batch(step, batch, measure)
                rng = torch_rng_state(self.device) if measure else None
                loss = self._forward(step, batch, measure)
                self._backward(step, loss, opt, measure)
                self._update(step, batch, opt, sched, take_step)
                if trim:
                    give_back_heap()
                if measure:
                    # The same batch again after the update, with the same dropout masks: a step that raises the
                    # loss of the very batch it was computed on has jumped across the valley.
                    with torch.no_grad(), replayed_rng(rng, self.device):
                        self.log.put("loss_after", self.compute(batch)[0].detach().float().reshape(()), step)
                self.steps_run = step + 1
                progress.update()
                if self.steps_run % NAN_CHECK_EVERY == 0 and self._should_stop(loss):
                    break
        except Stopped as stop:
            if not self.steps_run:
                raise
            self.stopped = (stop.reason, stop.exit_code)
        except AuditError as exc:
            if not (options.keep_partial and self.steps_run):
                raise
            self.stopped = (f"stopped by an error at probe step {self.steps_run}: {exc}", 2)
        finally:
            tracer.remove_hooks()

    def _log_batch(self, step: int, batch, measure: bool) -> None:
        """What the batch holds, on the device: class counts, regression targets' moments, a fingerprint."""
        log, targets = self.log, batch[1] if isinstance(batch, list | tuple) and len(batch) > 1 else None
        if self.classes and measure and isinstance(targets, torch.Tensor):
            log.put("labels", checks.label_counts(targets, self.classes), step)
        elif self.regression and isinstance(targets, torch.Tensor) and targets.is_floating_point():
            # Every step (three numbers, no sync): the floor's spread is a median deviation, unsteady from 8.
            log.put("targets", checks.target_moments(targets), step)
        if step < checks.FINGERPRINT_STEPS:
            log.put("batch_fp", checks.fingerprint(batch), step)

    def _forward(self, step: int, batch, measure: bool) -> torch.Tensor:
        if measure:
            spied = self.spied_classes
            with self.tracer, lossspy.LossSpy() if spied else contextlib.nullcontext() as spy:
                loss, _ = self.compute(batch)
            if spy is not None and spy.call is not None and spy.call.target is not None and \
                    spy.call.num_classes == spied:
                self.log.put("labels", checks.label_counts(spy.call.target, spied), step)
        else:
            loss, _ = self.compute(batch)
        if step == 0:
            if not loss.requires_grad:
                raise AuditError(f"{self.setup.model_file}: the loss does not depend on any trainable parameter "
                                 "(it has no grad_fn); check that nothing detaches it or runs under no_grad")
            # The first forward has fixed the module order, so the table holds for the whole probe.
            self.params = self.observer.track(self.model, self.named, sharded=self.d is not None and self.d.sharded,
                                              staged=self.options.in_place)
        self.observer.loss(step, loss)
        return loss

    def _backward(self, step: int, loss: torch.Tensor, opt, measure: bool) -> None:
        amp = self.amp
        try:
            amp.backward(loss)
        except Exception as exc:
            raise from_user_exception(exc, f"computing gradients at probe step {step}") from None
        amp.unscale(opt)
        scale = amp.current_scale()
        if scale is not None:
            self.log.put("amp_scale", [scale], step)
        self.params.after_backward(step, measure)

    def _update(self, step: int, batch, opt, sched, take_step) -> None:
        options = self.options
        held = optim.scale_lrs(opt, optim.warmup_factor(step, options.warmup))
        self.lrs.append(optim.group_lrs(opt))
        if options.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), options.clip_grad_norm)
        try:
            self.amp.step(opt, lambda batch=batch: take_step(lambda: _closure(opt, self.compute, batch)))
            optim.restore_lrs(opt, held)  # before the scheduler, which goes on from its own rates
            if sched is not None and (options.scheduler_every is None or (step + 1) % options.scheduler_every == 0):
                optim.step_scheduler(sched)
        except AuditError:
            raise
        except Exception as exc:
            raise from_user_exception(exc, f"taking an optimizer step at probe step {step}") from None
        self.params.after_step(step)

    def _should_stop(self, loss: torch.Tensor) -> bool:
        """Every NAN_CHECK_EVERY steps (a host sync): a loss that turned non-finite, or a signal held on any
        rank, which stops every rank here, at the same step."""
        d = self.d
        if d is not None:
            held_stop = interrupt.pending()
            code = distributed.stop_code(d, held_stop[1] if held_stop else 0)
            if code:
                raise Stopped(*(held_stop or (f"stopped with another rank, signalled while {interrupt.now()}", code)))
        return not distributed.agree(d, torch.isfinite(loss.detach()).item())

    # --- one read-back ----------------------------------------------------------------------------------------

    def evidence(self, opt, started: float) -> Evidence:
        d, log, view, steps_run, model = self.d, self.log, self.view, self.steps_run, self.model
        setup, options, amp, stream = self.setup, self.options, self.amp, self.stream
        for i, value in enumerate(view.init_losses):
            log.put("init_loss", value.reshape(()), i)
        for i, value in enumerate(self.raw_init):
            log.put("init_raw", value.reshape(()), i)
        logits = [o for o in self.outputs if isinstance(o, torch.Tensor) and o.is_floating_point()]
        if logits:
            flat = torch.cat([o.detach().float().reshape(-1) for o in logits])
            log.put("logits", torch.stack([flat.std() if flat.numel() > 1 else flat.abs().mean(), flat.mean()]), 0)
        ranks = distributed.per_rank(d, model, log, checks.FINGERPRINT_STEPS) if d is not None else None
        readout = optim.OptimizerReadout(opt, {id(p): n for n, p in self.named}, log, moments=d is None) \
            if steps_run else None
        host = log.read_back(distributed.reducer(d) if d is not None else None)
        loop_seconds = time.perf_counter() - self.loop_started  # the read-back waits for the device's queue
        # Four no-grad forwards: cheap enough for every re-probe, whose findings it helps judge.
        zeroed, zeroed_note = _zeroed(self.net, self.init_batches, self.compute) if steps_run else (None, None)
        rates = np.array(self.lrs[:steps_run], dtype=float) if self.lrs else None
        info = ProbeInfo(
            steps=options.steps, steps_run=steps_run, device=str(self.device), loss_fn=view.name,
            loss_fn_reason=view.reason, loss_fn_default=self.losses.choice.default, optimizer=self.described,
            optimizer_default=False, seed=options.seed, stats_every=options.stats_every,
            parameters=sum(p.numel() for p in model.parameters()),
            expected_initial_loss=view.expected, expected_initial_loss_reason=view.expected_reason,
            num_classes=view.num_classes, batch_size=_batch_size(self.first), lr=peak_lr(rates),
            scheduled_lr=optim.scheduled_peak(opt),
            input_nonfinite=_nonfinite_inputs(self.init_batches),
            model_file=setup.model_file, data_file=setup.data_file, loop_seconds=loop_seconds,
            not_stepped=self.not_stepped, structure_hash=structure_hash(model), world_size=d.world if d else 1,
            weights=optim.weight_precision(opt),
            strategy=d.strategy if d else None, amp=amp.mode,
        )
        if zeroed_note:
            info.notes.append(zeroed_note)
        if stream.exhausted:
            info.notes.append(f"the loader could not be iterated again: the probe ran {steps_run} steps")
        init = np.array([a.item() for a in host["init_loss"][1]])
        info.initial_loss = float(np.mean(init)) if np.isfinite(init).all() else float("nan")
        raw = np.array([a.item() for a in host["init_raw"][1]])
        info.start_loss = float(np.mean(raw)) if np.isfinite(raw).all() else float("nan")
        if "logits" in host:
            info.logits_std, info.logits_mean = (float(v) for v in host["logits"][1][0])
        evidence = self.observer.evidence(info, host, steps_run)
        evidence.initial_losses = [float(v) for v in init]
        evidence.structure = self.structure.structure
        evidence.dropouts = dropout_rates(model)
        evidence.lrs = rates
        if amp.mode is not None:
            evidence.amp = _amp_evidence(amp, host, evidence, steps_run)
        evidence.zeroed_inputs = zeroed
        evidence.zeroed_inputs_init = self.zeroed_init
        evidence.ranks = ranks
        evidence.optimizer = readout.evidence(host) if readout is not None else None
        evidence.input_stats = self.input_stats
        if view.call is not None:
            evidence.loss_call = view.call.summary()
        if view.recognised or self.classes:
            evidence.output_form = checks.output_form(view.outputs, view.name, view.class_dim, view.squashed_by)
        evidence.labels = [(s_, a.astype(int)) for s_, a in zip(*host.get("labels", ([], [])), strict=True)]
        evidence.epoch_steps = stream.epoch_length
        evidence.targets = [np.asarray(a, dtype=float) for a in host.get("targets", ([], []))[1]]
        evidence.batch_fingerprints = [np.asarray(a, dtype=float) for a in host.get("batch_fp", ([], []))[1]]
        evidence.val_loss = [(s_, float(a.reshape(-1)[0])) for s_, a in zip(*host.get("val_loss", ([], [])),
                                                                              strict=True)]
        info.seconds = time.perf_counter() - started
        if self.stopped:
            mark_partial(evidence, *self.stopped)
        return evidence


def _amp_evidence(amp: mixed.Amp, host, ev: Evidence, n: int) -> dict:
    scales = stacked(host.get("amp_scale"), n, 1)[:, 0] if amp.scaler is not None else np.full(n, np.nan)
    # The scaler skips exactly the steps whose unscaled gradients hold inf or NaN (GradScaler.step).
    bad = np.zeros(n, dtype=bool)
    for p in ev.params:
        bad[p.nonfinite_grad_steps] = True
    return {"mode": amp.mode, "scaler": amp.settings, "scales": scales,
            "skipped": [int(s) for s in np.flatnonzero(bad)] if amp.scaler is not None else [],
            "precision": None}


def mark_partial(evidence: Evidence, reason: str, exit_code: int) -> None:
    if not evidence.probe.partial_reason:
        evidence.probe.partial_reason = reason
        evidence.stop_code = exit_code


@dataclass
class _LossView:
    """The loss as the probe judges it: the functional loss the user's code was seen to call (its input is the
    logits, whoever computed them), else the auditor's own choice."""

    name: str
    reason: str
    num_classes: int | None
    class_dim: int | None
    expected: float | None
    expected_reason: str
    init_losses: list  # per element, so a summed loss compares with a per-element expectation
    outputs: list  # what the loss was fed, for the output-form check
    squashed_by: str | None = None
    recognised: bool = False
    call: LossCall | None = None  # the functional loss the user's code called, as the spy saw it


def _loss_view(losses: LossComputer, init_batches: list, init_losses: list, outputs: list) -> _LossView:
    choice, called = losses.choice, losses.recognised()
    if called is None:
        targets = [b[1] for b in init_batches if losses.training_step is None and isinstance(b[1], torch.Tensor)]
        expected, why = expected_initial_loss(choice, targets)
        return _LossView(choice.name, choice.reason, choice.num_classes, choice.class_dim, expected, why,
                         init_losses, outputs)
    expected, why = lossspy.expected_initial_loss(losses.spied)
    per_element = [torch.as_tensor(lossspy.per_element(c, v), dtype=torch.float32, device=v.device)
                   for c, v in zip(losses.spied, init_losses, strict=False)] + init_losses[len(losses.spied):]
    reason = choice.reason if choice.default else f"{choice.reason}: {called.describe()}"
    return _LossView(called.kind, reason, called.num_classes, called.class_dim, expected, why, per_element,
                     [c.input for c in losses.spied], called.squashed_by, recognised=True, call=called)


def _zeroed(model: nn.Module, batches: list, compute) -> tuple[dict | None, str | None]:
    """The zeroed-input experiment, or None and why it could not run on this model."""
    try:
        return checks.zeroed_inputs(model, batches[:2], lambda m, b: compute(b)[0]), None
    except AuditError as exc:
        return None, f"the input-independence experiment could not run on this model: {exc}"


def _closure(opt, compute, batch) -> torch.Tensor:
    """For optimizers that re-evaluate the loss inside step() (LBFGS): the same batch, from scratch."""
    opt.zero_grad(set_to_none=True)
    loss = compute(batch)[0]
    loss.backward()
    return loss


VAL_BATCHES = 4


def _val_batches(setup, device) -> list:
    if setup.val_loader is None:
        return []
    stream = BatchStream(setup.val_loader, device, setup.data_file)
    out = []
    for _ in range(VAL_BATCHES):
        b = stream.next()
        if b is None:
            break
        out.append(b)
    return out


def _val_loss(model: nn.Module, batches: list, compute, log: DeviceLog, step: int) -> None:
    """Validation loss in eval mode (no dropout, running BatchNorm statistics), as a training loop reports it."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            log.put("val_loss", torch.stack([compute(b)[0].detach().float() for b in batches]).mean(), step)
    finally:
        model.train(was_training)


def _nonfinite_inputs(batches) -> int:
    # One host sync, once: NaN in the data is the commonest cause of a NaN loss at step 0.
    counts = [(~torch.isfinite(t)).sum() for b in batches for t in tensors(b) if t.is_floating_point()]
    return int(torch.stack(counts).sum()) if counts else 0


def _batch_size(batch) -> int | None:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else None
    if isinstance(batch, list | tuple) and batch:
        return _batch_size(batch[0])
    if isinstance(batch, dict) and batch:
        return _batch_size(next(iter(batch.values())))
    return None
