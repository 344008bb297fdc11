import numpy as np

from auditor.causes import LR_HIGH
from auditor.engine import FixPlan, Rule, Threshold
from auditor.evidence import first_step, nanmedian, pct
from auditor.report import figures

_GATES = ("Sigmoid", "Hardsigmoid")


def _gating(ev) -> set[str]:
    """Activation modules in a squeeze-and-excitation bottleneck: they see one pooled vector per sample (fewer
    values per unit than the network's other activations) and feed, through one layer, a sigmoid gate."""
    s = ev.structure
    if not s or not getattr(s, "edges", None):
        return set()
    types = {c.name: c.type for c in s.calls}
    after: dict[str, set[str]] = {}
    for a, b in s.edges:
        after.setdefault(a, set()).add(b)
    fewest = min((a.positions for a in ev.activations if a.positions), default=0)
    most = max((a.positions for a in ev.activations), default=0)
    out = set()
    for act in ev.activations:
        if not fewest or act.positions != fewest or most <= fewest:
            continue
        reach = {c for n in after.get(act.name, ()) for c in after.get(n, ())} | after.get(act.name, set())
        if any(types.get(n) in _GATES for n in reach):
            out.add(act.name)
    return out


class DeadUnits(Rule):
    id = "dead-units"
    summary = "Units that are off for every sample of a batch (ReLU at 0, tanh pinned at ±1): they never learn."
    thresholds = {
        "warn_fraction": Threshold(0.25, "warn when this fraction of a layer's units is dead",
                                   "measured: healthy samples show 0-4% dead units with batch 32"),
        "error_fraction": Threshold(0.5, "error when over half of a layer's units are dead",
                                    "half the layer's capacity gone"),
    }
    why = """
A ReLU unit whose pre-activation is negative for every input outputs 0 and gets a zero gradient, so it can
never recover: a dead neuron. The same holds for a tanh unit pinned at ±1 for every input. Typical causes
are large negative biases, a too-high learning rate that knocked units off the data manifold, or inputs
with a large offset.
"""
    example = """
layer = nn.Linear(256, 256)
nn.init.constant_(layer.bias, -3.0)    # every unit starts off
"""
    use_instead = """
nn.init.kaiming_normal_(layer.weight, nonlinearity='relu')
nn.init.zeros_(layer.bias)
# and keep the learning rate in range; consider LeakyReLU/GELU, or BatchNorm before the ReLU
"""
    known_problems = """
"Dead for every sample" is judged per batch: with very small batches a rarely active unit can look dead. Units
in the bottleneck of a squeeze-and-excitation gate (one pooled vector per sample, feeding a sigmoid gate) are
reported as information: the gate still works through the units left.
Leaky ReLU keeps a slope everywhere and is never reported.
"""
    references = ("A. Karpathy, makemore part 3 (2022): dead neurons, the white columns",
                  "Lu et al., 'Dying ReLU and Initialization: Theory and Numerical Examples' (2019)",
                  "He et al., 'Delving Deep into Rectifiers', ICCV 2015")

    def check(self, ev, t):
        bad, gates = [], []
        # The probe marks what runs inside a squeeze-excitation module (its gate too); the structure finds the
        # bottlenecks of SE units written inline.
        gating = _gating(ev) | {a.name for a in ev.activations if a.gating}
        for act in ev.activations:
            frac = nanmedian(act.dead)
            if np.isfinite(frac) and frac >= t.warn_fraction:
                (gates if act.name in gating else bad).append((frac, act))
        if gates:
            listing = ", ".join(f"{a.name}: {pct(f)} of {a.units} units" for f, a in gates)
            yield self.finding(
                "info", "Dead units in squeeze-and-excitation gates",
                f"Units off for every sample inside squeeze-and-excitation units: {listing}. An SE unit sees one "
                "pooled vector per sample, so a few samples decide; with units of its bottleneck off the gate still "
                "works through the rest and its bias, and a gate shut on a channel switches that channel off, which "
                "is what a gate does. From-scratch SE networks (RegNetY, MobileNetV3, EfficientNet) train with them.",
                "Nothing to do unless the whole gate is dead; a wider bottleneck (squeeze ratio) keeps more units.",
                [a.name for _, a in gates], dead_fraction={a.name: f for f, a in gates}, gate=True)
        if not bad:
            return
        bad.sort(key=lambda x: -x[0])
        out = ev.structure.output_producer if ev.structure else None
        head = next(((f, a) for f, a in bad if a.name == out), None)
        if head is not None:
            frac, act = head
            yield self.finding(
                "error", "Dead units on the model's output",
                f"{out} is the model's output itself and {pct(frac)} of its {act.units} units are off for every "
                "sample across the probe: an activation on the output clamps every prediction, and its units are "
                "off for every target below its range.",
                f"Remove the activation after the output layer ({out}): a regression output is the last layer's raw "
                "value, a classifier's the logits the loss expects:\n\n"
                "model = nn.Sequential(..., nn.Linear(64, 1))          # not ..., nn.Linear(64, 1), nn.ReLU()",
                [out], onset=first_step(act.dead, t.warn_fraction), dead_fraction={out: frac}, output=out)
            bad = [x for x in bad if x is not head]
            if not bad:
                return
        listing = ", ".join(f"{a.name}: {pct(f)} of {a.units} units" for f, a in bad)
        diagnosis = (f"Units that are off for every sample of the batch, across the probe: {listing}. "
                     "Those units get no gradient and cannot recover.")
        fix = ("Use fan-in initialisation for the activation and zero biases; lower the learning rate if units "
               "die during training:\n\nnn.init.kaiming_normal_(layer.weight, nonlinearity='relu')\n"
               "nn.init.zeros_(layer.bias)")
        onsets = [first_step(a.dead, t.warn_fraction) for _, a in bad]
        onset = min((s for s in onsets if s is not None), default=None)
        # Alive at the first step, dead later: the initialisation was sound and the updates pushed the units off
        # the data, the mark of a rate too high for these steps (VGG-11-BN at its recipe's rate: 18% of its first
        # classifier layer off at step 0, 85% at step 13 as the loss rose 2.8 -> 6.3, 99.7% after).
        at_start = [float(a.dead[0]) for _, a in bad if a.dead.size]
        died = bool(onset) and bool(at_start) and all(np.isfinite(d) and d < t.warn_fraction for d in at_start)
        lr = ev.probe.lr
        if died:
            diagnosis += (f" They were alive at the start (at most {pct(max(at_start))} off at step 0) and went dead "
                          f"from step {onset}: the updates pushed them off the data, the mark of a learning rate too "
                          "high for these steps.")
            fix = ("Lower the learning rate" + (f" (a tenth: lr={lr / 10:.2g})" if lr else "") + ", or warm it up:"
                   "\n\nscheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, "
                   "total_iters=200)")
        yield self.finding("error" if bad[0][0] >= t.error_fraction else "warning",
                           "Dead units" + (": killed during training" if died else ""), diagnosis, fix,
                           [a.name for _, a in bad], onset=onset, dead_fraction={a.name: f for f, a in bad},
                           died_in_training=died, advice=LR_HIGH if died else None)

    metric = "dead fraction of the worst layer"

    def plan_fix(self, ev, finding):
        lr = ev.probe.lr
        if not finding.evidence.get("died_in_training") or not lr or finding.severity == "info":
            return None
        return FixPlan(f"learning rate {lr / 10:.2g} (a tenth)", lr=lr / 10)

    def measure(self, ev, finding):
        values = [nanmedian(a.dead) for a in ev.activations if a.name in finding.layers]
        values = [v for v in values if np.isfinite(v)]
        return max(values) if values else None

    def draw(self, ax, ev, finding):
        acts = {a.name: a.dead for a in ev.activations if a.name in finding.layers}
        figures.per_step(ax, acts, "dead fraction (whole batch)",
                         guide=self.thresholds["warn_fraction"].default, guide_label="warning threshold (default)")


RULE = DeadUnits()
