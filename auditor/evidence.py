"""Step 3 of the data flow: what the probe measured, on the host, as plain numbers.

Rules and reports only read this; nothing here touches the model or the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


def safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num/den where den is positive and both are finite; NaN (undefined) elsewhere, never inf."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    ok = np.isfinite(num) & np.isfinite(den) & (den > 0)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=ok)
    return out


def nanmedian(values) -> float:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")


@dataclass
class ProbeInfo:
    steps: int
    steps_run: int
    device: str
    loss_fn: str
    loss_fn_reason: str
    loss_fn_default: bool
    optimizer: str
    optimizer_default: bool
    seed: int
    parameters: int
    stats_every: int = 1  # activation, weight and update statistics were taken every this many steps
    initial_loss: float | None = None  # per element, for the expectation (a summed loss divided by its elements)
    # The loss before any update in the loss curve's own units (what backward was called on: a summed loss as it
    # is, a loss divided for gradient accumulation as it is), for the rules that read a rise from it.
    start_loss: float | None = None
    expected_initial_loss: float | None = None
    expected_initial_loss_reason: str = ""
    num_classes: int | None = None
    logits_std: float | None = None
    logits_mean: float | None = None
    batch_size: int | None = None
    lr: float | None = None
    scheduled_lr: float | None = None  # the schedule's peak for the first group, where its scheduler records it
    input_nonfinite: int = 0
    seconds: float = 0.0
    loop_seconds: float = 0.0  # the training steps alone, with the probe's statistics and their read-back
    model_file: str = "<api>"
    data_file: str = "<api>"
    notes: list[str] = field(default_factory=list)
    # Trainable parameters the optimizer cannot move: {name: "not in the optimizer" | "learning rate 0"}.
    not_stepped: dict = field(default_factory=dict)
    # The optimizer's tensors by dtype ({"float16": elements, ...}) and its smallest eps (optim.weight_precision).
    weights: dict = field(default_factory=dict)
    # Names, shapes and dtypes of parameters and buffers, and module types, hashed: `audit diff` says when two
    # reports are of different models rather than comparing their numbers as if they were one.
    structure_hash: str = ""
    # Set when the audit was stopped (a signal, --timeout, an exception in the user's code after the first
    # step): what follows was measured until then.
    partial_reason: str | None = None
    world_size: int = 1  # ranks under torchrun
    strategy: str | None = None  # ddp | fsdp | wrap() (model.py's own), under torchrun
    amp: str | None = None  # bf16 | fp16: the replay ran under autocast (fp16 with a GradScaler unless disabled)


@dataclass
class ParamSeries:
    """One trainable tensor. Arrays are indexed by probe step."""

    name: str
    shape: tuple[int, ...]
    role: str  # weight | bias | embedding | norm
    module_type: str
    order: int  # position of its module in the forward pass: 0 is nearest the input
    grad_norm: np.ndarray
    # RMS = ‖x‖/√n; the ratios below are ‖g‖/‖w‖ and ‖Δw‖/‖w‖ (see auditor/probe/params.py for why not std)
    grad_rms: np.ndarray
    data_rms: np.ndarray
    update_rms: np.ndarray
    has_grad: np.ndarray  # bool per step: whether .grad was set after backward

    @property
    def zero_at_init(self) -> bool:
        return not (np.isfinite(self.data_rms[0]) and self.data_rms[0] > 0) if self.data_rms.size else True

    @property
    def grad_data_ratio(self) -> np.ndarray:
        return safe_ratio(self.grad_rms, self.data_rms)

    @property
    def update_data_ratio(self) -> np.ndarray:
        return safe_ratio(self.update_rms, self.data_rms)

    @property
    def received_grad(self) -> bool:
        return bool(self.has_grad.any())

    @property
    def nonfinite_grad_steps(self) -> np.ndarray:
        return np.where(self.has_grad & ~np.isfinite(self.grad_norm))[0]


@dataclass
class ActivationSeries:
    name: str
    kind: str  # tanh | sigmoid | relu | leaky_relu | smooth
    units: int
    order: int
    mean: np.ndarray
    std: np.ndarray
    saturated: np.ndarray
    dead: np.ndarray
    grad_mean: np.ndarray
    grad_std: np.ndarray
    histograms: dict[int, np.ndarray] = field(default_factory=dict)
    grad_histograms: dict[int, np.ndarray] = field(default_factory=dict)
    # Values per unit in one forward: the batch for a (B, H) layer, B x T for tokens, B x H x W for pixels.
    positions: int = 0
    gating: bool = False  # inside a squeeze-excitation unit: a side branch that gates the body


@dataclass
class Evidence:
    probe: ProbeInfo
    loss: np.ndarray
    # On measured steps, the loss of the same batch right after the update, same dropout masks (NaN elsewhere).
    loss_after: np.ndarray
    grad_norm: np.ndarray
    params: list[ParamSeries]
    activations: list[ActivationSeries]
    initial_losses: list[float] = field(default_factory=list)
    # The experiments beyond the replay (auditor/probe/checks.py); None where they could not run.
    structure: object = None  # auditor.probe.structure.Structure
    stop_code: int | None = None  # the exit code a stopped (partial) audit ends with
    input_stats: dict | None = None
    eval_dropout: dict | None = None  # dropout still drawn by a forward in eval mode (checks.eval_dropout)
    dropouts: list = field(default_factory=list)  # (module name, p) of the trained model's dropout layers
    output_form: dict | None = None
    labels: list = field(default_factory=list)  # (step, class counts of that batch)
    targets: list = field(default_factory=list)  # regression targets of each measured batch: [count, sum, sum of sq.]
    epoch_steps: int | None = None  # batches in one pass of the loader, where the replay saw it end (else None)
    val_loss: list = field(default_factory=list)  # (step, mean validation loss)
    batch_fingerprints: list = field(default_factory=list)  # one small vector per early step (checks.fingerprint)
    # Each parameter group's learning rate at each step, as the optimizer held it when it stepped (steps x groups).
    lrs: np.ndarray | None = None
    # A script's own loop (auditor/probe/script.py): backward passes per step, modes of each forward, clipping,
    # gradients left from earlier steps. None for the replay, whose loop is the auditor's own.
    loop: dict | None = None
    zeroed_inputs: dict | None = None
    # Mixed precision (auditor/probe/amp.py): mode, scaler settings, the scale and skipped flag per step, and the
    # fp16-against-float32 precision check on one batch. None for a float32 probe.
    amp: dict | None = None
    zeroed_inputs_init: dict | None = None  # the same on the untrained model
    batch_mixing: dict | None = None
    causal_leak: dict | None = None
    overfit: dict | None = None
    lr_range: dict | None = None
    # Whether the raw inputs predict their targets on samples not fitted (checks.inputs_signal: class labels, or
    # regression targets under mean squared error).
    label_signal: dict | None = None
    # Under torchrun, per rank (auditor.probe.run._per_rank): fingerprints, end-of-probe norms, gradient norms.
    ranks: dict | None = None
    # Shuffling DistributedSamplers iterated more than once in the replay, with the epoch of each pass
    # (auditor/probe/samplers.py): a loader.py whose own epoch loop never calls set_epoch repeats one epoch.
    samplers: list = field(default_factory=list)
    # The optimizer's settings per group, and for adaptive ones √v̂ against eps per tensor at the end of the
    # replay (auditor/probe/optim.OptimizerReadout).
    optimizer: dict | None = None
    # Warnings shown while the user's forward and loss ran (auditor/probe/warnlog.py), once per message and line.
    warnings: list = field(default_factory=list)
    # The functional loss the user's code called, with the shapes it compared (None where none was recognised).
    loss_call: dict | None = None

    def matrices(self) -> list[ParamSeries]:
        """Weight matrices and conv kernels in forward order: the tensors the lecture's plots look at.

        Biases, norm gains and tensors that start at zero are left out: their std is 0 or ~1 by design,
        and a ratio against it says nothing about learning speed.
        """
        return sorted((p for p in self.params if p.role in ("weight", "embedding") and not p.zero_at_init),
                      key=lambda p: p.order)

    def _gates(self) -> list[ParamSeries]:
        return [p for p in self.params if len(p.shape) <= 1 and not p.name.endswith("bias")
                and p.role != "embedding" and p.data_rms.size and np.isfinite(p.data_rms[0]) and p.data_rms[0] < 1e-3]

    @property
    def zero_gated(self) -> bool:
        """Whether some gain starts at exactly zero (see gated()): what it closes gets exactly no gradient at first."""
        return any(g.data_rms[0] == 0 for g in self._gates())

    def gated(self) -> set[str]:
        """Weights behind a gain that starts at (nearly) zero: a residual branch closed on purpose.

        A zero-initialised last BatchNorm gain per residual block (Goyal et al. 2017, timm's ResNets), LayerScale
        (CaiT, ConvNeXt: 1e-6), ReZero's and SkipInit's scalar: the branch's output starts at zero, so its
        weights get (almost) no gradient until the gain grows. Their small gradient is that gate, not a scale
        bug, and re-initialising them changes nothing. A gate is a 1-D, non-bias tensor starting below 1e-3 RMS
        (gains start at 1). A gate at exactly zero closes the weights whose gradient was exactly zero at the first
        step: only a zero factor downstream does that, and it is measured, so a shortcut beside the branch keeps
        its gradient and stays judged. A small gate closes the weights of its block that run before it (the
        block: the module that owns it, or for a leaf such as a norm layer or a LayerScale, that module's parent).
        """
        weights = [p for p in self.params if p.role == "weight"]
        gates = self._gates()
        out = set()
        if any(g.data_rms[0] == 0 for g in gates):
            out.update(p.name for p in weights if p.has_grad.size and p.has_grad[0] and p.grad_rms[0] == 0)
        for block, order in self.gate_blocks():
            out.update(p.name for p in weights if p.name.startswith(block + "." if block else "") and p.order < order)
        return out

    def gate_blocks(self) -> list[tuple[str, int]]:
        """(block, the gate's order) for each gain that starts small but not at zero (see gated())."""
        out = []
        for g in (g for g in self._gates() if g.data_rms[0] > 0):
            owner = g.name.rpartition(".")[0]
            leaf = not any(p.name.startswith(owner + ".") and p.name.count(".") > g.name.count(".")
                           for p in self.params)
            out.append((owner.rpartition(".")[0] if leaf else owner, g.order))
        return out

    def window(self, fraction: float = 0.5) -> slice:
        """The later part of the probe, past the first optimizer steps' transients."""
        n = self.probe.steps_run
        return slice(min(int(n * (1 - fraction)), max(n - 1, 0)), n)


def fmt(x: float, digits: int = 3) -> str:
    """Numbers in diagnoses: plain for ordinary magnitudes, scientific for tiny or huge ones."""
    if x is None or not np.isfinite(x):
        return "nan" if x is not None and np.isnan(x) else str(x)
    if x != 0 and (abs(x) < 1e-2 or abs(x) >= 1e4):
        return f"{x:.2e}"
    return f"{x:.{digits}g}"


def input_free_loss(ev: Evidence) -> tuple[float, str, float] | None:
    """The lowest loss a model that ignores its input can reach, what it is, and how much it varies from batch
    to batch (std): for cross-entropy the entropy of the label frequencies, for mean squared error the variance
    of the targets (the loss of predicting their mean). The floor of a model whose targets are unrelated to its
    inputs. The spread matters for regression: one batch's squared error about the mean varies by about
    sqrt(2/batch) of the variance, where a balanced classifier's label entropy barely moves. Both are robust (a
    median, and the median absolute deviation as a std): the losses they are compared with are medians, and a
    few corrupt targets (a value 300x off) must not make every loss look like the floor."""
    if ev.labels:
        counts = np.array([c for _, c in ev.labels], dtype=float)
        counts = counts[counts.sum(1) > 0]
        if not counts.size:
            return None
        freq = counts.sum(0) / counts.sum()
        logs = np.log(np.where(freq > 0, freq, 1.0))
        per_batch = -(counts * logs).sum(1) / counts.sum(1)
        p = freq[freq > 0]
        return float(-(p * np.log(p)).sum()), "the entropy of the label frequencies", _robust_std(per_batch)
    if ev.targets and ev.probe.loss_fn == "mse":
        moments = np.array(ev.targets, dtype=float)
        n, _, squares = moments.sum(0)
        if n < 2 or not np.isfinite(squares):
            return None
        mean = float(np.median(moments[:, 1] / moments[:, 0]))  # robust: a few targets 300x off move a mean
        per_batch = (moments[:, 2] - 2 * mean * moments[:, 1]) / moments[:, 0] + mean**2
        return float(np.median(per_batch)), "the variance of the targets", _robust_std(per_batch)
    return None


def target_moments(ev: Evidence) -> tuple[float, float] | None:
    """The regression targets' mean and standard deviation, robust to a few corrupt batches (medians of the
    per-batch values), from the moments the probe logs each step; None without regression targets."""
    if not ev.targets:
        return None
    m = np.array(ev.targets, dtype=float)
    m = m[m[:, 0] > 0]
    if not m.size or not np.isfinite(m).all():
        return None
    means = m[:, 1] / m[:, 0]
    variances = np.maximum(m[:, 2] / m[:, 0] - means**2, 0.0)
    return float(np.median(means)), float(np.sqrt(np.median(variances)))


def learnt_well(ev: Evidence, fraction: float) -> tuple[float, float, str] | None:
    """(where the loss ended, the loss of a model that ignores its input, what that is) where the loss ended
    under `fraction` of it: the network learns, whatever a rule sees go wrong inside it. The reference is
    input_free_loss (the label entropy, ln C when balanced; the targets' variance), else the first loss. None
    where it did not, or cannot be told."""
    seq, end, floor = loss_prefix(ev), end_level(ev), input_free_loss(ev)
    if floor:
        reference, what = floor[0], floor[1] + ", the loss of a model that ignores its input"
    else:
        reference, what = (float(seq[0]) if seq.size else float("nan")), "the first loss"
    if seq.size < 3 or not (np.isfinite(end) and np.isfinite(reference) and reference > 0):
        return None
    return (end, reference, what) if end < fraction * reference else None


def _robust_std(values: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def floor_tolerance(floor: tuple[float, str, float], margin: float, z: float, steps: int) -> float:
    """How far a median of `steps` batch losses may sit from the input-free floor and still be at it: the
    relative margin, or z standard errors of such a median (1.25 sigma / sqrt(steps)), whichever is wider."""
    value, _, spread = floor
    return max((1 - margin) * value, z * 1.25 * spread / np.sqrt(max(steps, 1)))


def first_pass(ev: Evidence) -> tuple[np.ndarray, bool]:
    """The finite loss curve over the loader's first pass, and whether the replay went round the loader: from
    the second pass on, the model has trained on every batch it sees, and its loss measures memory as much as
    learning."""
    seq = loss_prefix(ev)
    repeated = bool(ev.epoch_steps) and ev.probe.steps_run > ev.epoch_steps
    return (seq[:ev.epoch_steps] if repeated else seq), repeated


def fresh_level(ev: Evidence) -> tuple[float, int]:
    """Where the loss ended on batches the model had not trained on yet, and over how many steps: end_level
    over the loader's first pass where the replay went round it (a second pass is partly memorised, and a
    model learns nothing else from labels unrelated to their inputs) and it has 20 steps or more; end_level
    otherwise."""
    first, repeated = first_pass(ev)
    seq = first if repeated and first.size >= 20 else loss_prefix(ev)
    k = max(3, seq.size // 5)
    return (float(np.median(seq[-k:])) if seq.size else float("nan")), min(k, seq.size)


def overfit_left(losses, floor: float | None) -> tuple[float, float]:
    """How much of the way from the start to the loss's floor is left at the best step (inf where unknown), and
    that floor. Label smoothing, class weights with it, soft targets: the loss has a floor above 0 that no model
    goes below, so progress is measured towards it (0 where it is unknown or implausibly near the start)."""
    start = float(losses[0])
    low = floor if floor is not None and 0 <= floor < 0.9 * start else 0.0
    best = min((float(v) for v in losses if math.isfinite(v)), default=math.inf)
    left = (best - low) / (start - low) if math.isfinite(start) and start > low and math.isfinite(best) else math.inf
    return left, low


def inputs_blind(ev: Evidence, z: float) -> bool:
    """The labels-from-inputs test ran and its classifier on the raw inputs did no better than always naming the
    commonest class, nor than `z` standard errors above what naming classes as often as it did would score by
    chance (where classes are unequal, a classifier that learnt something can still score below the commonest
    class's share): no sign that the inputs carry their labels, not proof that they do not."""
    s = ev.label_signal
    if not s:
        return False
    if s.get("kind") == "regression":  # a ridge regression's gain over the targets' mean, within z of none
        return s["gain"] <= z * s["gain_se"]
    bar = s["majority"]
    if s.get("chance") is not None:
        bar = min(bar, s["chance"] + z * math.sqrt(s["chance"] * (1 - s["chance"]) / s["samples"]))
    return s["accuracy"] <= bar


def sweep_new_samples_only(ev: Evidence, blind_z: float) -> bool:
    """Whether best_sweep_loss reads only the range test's steps on samples its copy had not trained on."""
    r = ev.lr_range or {}
    unseen = r.get("unseen") or []
    return inputs_blind(ev, blind_z) and len(unseen) == len(r.get("losses", ())) and sum(unseen) >= 5


def best_sweep_loss(ev: Evidence, blind_z: float) -> float | None:
    """The lowest running-median loss the LR range test reached, at any rate. Where the inputs show no sign of
    carrying their labels, only on batches of samples the sweep's copy had not trained on yet (5 or more): on a
    small dataset the sweep goes round the loader, and a dip on samples it has seen may be memory, not learning
    (ResNet-18 on shuffled labels, measured: the sweep fell from 2.5 to 1.9 against their entropy of 2.3 as its
    batches came round again; on new samples at the same rates it never went below 2.36)."""
    r = ev.lr_range
    if not r or len(r.get("losses", ())) < 5:
        return None
    losses = np.asarray(r["losses"], dtype=float)
    if sweep_new_samples_only(ev, blind_z):
        losses = losses[np.asarray(r["unseen"], dtype=bool)]
    s = smooth(losses, 5)
    return float(np.nanmin(s)) if np.isfinite(s).any() else None


def first_step(values, threshold: float) -> int | None:
    """The first step whose (finite) value reaches `threshold`: where an anomaly began."""
    values = np.asarray(values, dtype=float)
    hits = np.flatnonzero(np.isfinite(values) & (values >= threshold))
    return int(hits[0]) if hits.size else None


def pct(fraction: float) -> str:
    """Whole percents, except near 0 and just short of all, where rounding would say 0% or 100% of a part."""
    if abs(fraction) < 0.1:
        return f"{100 * fraction:.1f}%"
    if 0.995 <= abs(fraction) < 1:
        for digits in (1, 2):
            if abs(round(100 * fraction, digits)) < 100:
                return f"{100 * fraction:.{digits}f}%"
        return ">99.99%" if fraction > 0 else "<-99.99%"
    return f"{100 * fraction:.0f}%"


def smooth(values: np.ndarray, window: int = 5) -> np.ndarray:
    """Centred running median: keeps steps and jumps, drops single-batch noise. NaN (an unmeasured or
    non-finite step) is skipped; a window with nothing finite gives NaN."""
    values = np.asarray(values, dtype=float)
    half = window // 2
    out = np.full(values.size, np.nan)
    for i in range(values.size):
        chunk = values[max(0, i - half): i + half + 1]
        if np.isfinite(chunk).any():
            out[i] = np.nanmedian(chunk)
    return out


def body_activations(ev: Evidence) -> list:
    """The activations on the signal's path, without those inside squeeze-excitation gates: a gate sees one
    pooled vector per sample, whose scale is a spatial mean's (MaxViT's first SE at 0.02 against its last at
    0.12, from one initialisation), not a stage of the signal whose scale compounds with depth."""
    return [a for a in ev.activations if not a.gating]


def depth_profile(ev: Evidence) -> tuple[list[str], np.ndarray, str]:
    """Gradient scale layer by layer, input side first, as the median over the probe.

    The gradient at each activation's output is the cleanest profile (the lecture's backward-pass
    histograms); models with fewer than two traced activations fall back to weight-gradient RMS.
    """
    acts = [a for a in ev.activations if np.isfinite(a.grad_std).any()]
    # One kind of activation only (the network's repeated nonlinearity): a pooler's tanh that sees one token
    # of sixteen, or a gate, has a gradient on another scale by design, not because the gradient vanished.
    kinds = [a.kind for a in acts]
    acts = [a for a in acts if kinds and a.kind == max(set(kinds), key=kinds.count)]
    # A head that sees one vector per sample (a classifier's or pooler's activation) behind a body that sees
    # many positions per sample (tokens, pixels) gets the loss's gradient undivided, where each position of the
    # body gets a share: its per-element gradient is larger by design (ELECTRA's and ALBERT's heads: 2-3 decades).
    # A squeeze-excitation unit inside the body sees one pooled vector too, and its gradient passes through a
    # sigmoid gate: on another scale by design (MobileNetV3's last SE: 2 decades under the first conv's). It is
    # told by its module's class or by a later activation seeing more positions than it does (a body's
    # positions only shrink as it goes; at a 1x1 last stage, as small inputs make, only the class tells).
    # Inside a residual branch closed by a zero-initialised gain (Evidence.gated), the gradient is exactly zero
    # at the first step and then as small as the gain still is: the gate's scale, not the depth's (ResNeSt's
    # last branch: 2e-8 against the stem's 2e-4).
    # Inside a residual branch behind a gain that starts small (LayerScale at 1e-6..1e-5: ConvNeXt, CaiT,
    # EfficientFormerV2, PoolFormer), every gradient is that gain times the body's: the gate's scale again
    # (EfficientFormerV2's last MLP: 2 decades under its stem). Those blocks end at their residual sum, with no
    # activation after the gain, so an activation of the block is one behind it.
    blocks = [b for b, _ in ev.gate_blocks() if b]
    acts = sorted((a for a in acts if not any(a.name.partition(":")[0].startswith(b + ".") for b in blocks)),
                  key=lambda a: a.order)
    closed = ev.zero_gated
    side = {a.name for i, a in enumerate(acts)
            if a.gating or any(b.positions > a.positions for b in acts[i + 1:])
            or (closed and a.grad_std.size and a.grad_std[0] == 0)}
    if len(acts) - len(side) >= 3:
        acts = [a for a in acts if a.name not in side]
    fewest = min((a.positions for a in acts), default=0)
    if fewest and any(a.positions > fewest for a in acts):
        body = [a for a in acts if a.positions > fewest]
        if len(body) >= len(acts) - 2:
            acts = body
    if len(acts) >= 3:
        return [a.name for a in acts], np.array([nanmedian(a.grad_std) for a in acts]), "activation gradients"
    gated = ev.gated()
    mats = [p for p in ev.matrices() if p.role == "weight" and p.name not in gated]
    return [p.name for p in mats], np.array([nanmedian(p.grad_rms) for p in mats]), "weight gradients"


def profile_ends(scale: np.ndarray, source: str) -> tuple[float, float]:
    """The gradient scale near the input and near the output. Activations of one kind are alike, so their
    first and last are compared; weight tensors are not (an attention query's gradient is small by its
    nature at init), so for them the medians of the first and last third are."""
    if source == "activation gradients":
        return float(scale[0]), float(scale[-1])
    k = max(1, scale.size // 3)
    return float(np.median(scale[:k])), float(np.median(scale[-k:]))


def loss_prefix(ev: Evidence) -> np.ndarray:
    """The loss curve up to its first non-finite value."""
    bad = ~np.isfinite(ev.loss)
    return ev.loss[: int(np.argmax(bad))] if bad.any() else ev.loss


def fifths(seq: np.ndarray) -> tuple[float, float, int]:
    """Medians of a loss curve's first and last fifth (at least 3 steps each), and that window's length."""
    k = max(3, seq.size // 5)
    return float(np.median(seq[:k])), float(np.median(seq[-k:])), k


def end_level(ev: Evidence) -> float:
    """Where the loss ended: the median of the last fifth (at least 3 steps) of the finite loss curve."""
    seq = loss_prefix(ev)
    return fifths(seq)[1] if seq.size else float("nan")


def update_level(ev: Evidence) -> tuple[float, dict[str, float]]:
    """Median over weight matrices of log10 ‖Δw‖/‖w‖ in the later half of the probe."""
    per_layer = {}
    for p in ev.matrices():
        r = nanmedian(p.update_data_ratio[ev.window()])
        if np.isfinite(r) and r > 0:
            per_layer[p.name] = float(np.log10(r))
    return (float(np.median(list(per_layer.values()))) if per_layer else float("nan")), per_layer


def first_update_level(ev: Evidence) -> float:
    """Median over weight matrices of log10 ‖Δw‖/‖w‖ on the very first step: a rate so high that the first
    update rewrites the weights has done its damage (dead units, a knocked-out network) before the later
    half of the probe, which update_level reads, shows anything."""
    values = [np.log10(r) for p in ev.matrices() if p.update_data_ratio.size
              for r in [p.update_data_ratio[0]] if np.isfinite(r) and r > 0]
    return float(np.median(values)) if values else float("nan")


ADAPTIVE = ("Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad", "Adadelta", "SparseAdam",
            "Adafactor", "LBFGS")


def is_adaptive(ev: Evidence) -> bool:
    return ev.probe.optimizer.split("(")[0] in ADAPTIVE


def scale_free(ev: Evidence) -> set[str]:
    """Weights whose layer feeds only normalisations (a conv into BatchNorm, a projection into LayerNorm): the
    output does not depend on their scale, so their gradient shrinks as they grow (‖g‖ ∝ 1/‖w‖) and a large
    ‖g‖/‖w‖ only says the weights are small, not that a step will blow them up (Ioffe & Szegedy 2015, 3.3;
    van Laarhoven, 'L2 Regularization versus Batch and Weight Normalization', 2017)."""
    s = ev.structure
    if not s or not getattr(s, "edges", None):
        return set()
    norm = {c.name for c in s.calls if "Norm" in c.type}
    consumers: dict[str, set[str]] = {}
    for a, b in s.edges:
        consumers.setdefault(a, set()).add(b)
    return {f"{a}.weight" for a, bs in consumers.items() if bs and bs <= norm and a not in norm}
