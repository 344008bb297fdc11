import numpy as np

from auditor.engine import FixPlan, Rule, Threshold
from auditor.evidence import first_step, nanmedian, pct
from auditor.report import figures


class SaturatedUnits(Rule):
    id = "saturated-units"
    summary = "tanh or sigmoid units spend most of their time in the flat tails, where the gradient is ~0."
    thresholds = {
        "warn_fraction": Threshold(0.35, "warn when this fraction of tanh/sigmoid outputs is saturated "
                                   "(|tanh| > 0.97, sigmoid within 0.03 of 0 or 1)",
                                   "measured: tanh with PyTorch's gain 5/3 on unit-variance inputs saturates "
                                   "21% by design (makemore fixed sample: 20%)"),
        "error_fraction": Threshold(0.6, "error above this fraction",
                                    "makemore lecture: raw randn init saturates most units (sample: 70%)"),
    }
    why = """
tanh'(x) = 1 - tanh(x)^2: at |tanh| > 0.97 the local gradient is below 0.06, so almost nothing flows back
through a saturated unit and the weights feeding it barely learn. When most units saturate, the layer
behaves like a fixed binary code. The cause is pre-activations that are too large: weights initialised
without scaling by 1/sqrt(fan_in), or inputs that are not normalised.
"""
    example = """
W1 = torch.randn(n_in, n_hidden)            # pre-activations with std ~ sqrt(n_in)
h = torch.tanh(x @ W1 + b1)
"""
    use_instead = """
W1 = torch.randn(n_in, n_hidden) * (5/3) / n_in**0.5   # Kaiming init with tanh's gain
# or: torch.nn.init.xavier_uniform_(layer.weight, gain=torch.nn.init.calculate_gain('tanh'))
# or normalise the pre-activations: h = torch.tanh(bn(x @ W1))
"""
    known_problems = """
A layer meant to act as a gate (LSTM gates, attention gates) may saturate on purpose late in training; at
initialisation, which is what the probe sees, saturation is nearly always unintended. The sigmoid that makes
binary cross-entropy's probabilities is the model's output, not a hidden layer, and is left out: near 0 on an
image's background it is predicting, and the loss cancels its derivative.
"""
    references = ("A. Karpathy, makemore part 3 (2022): tanh saturation and the 0.97 histogram",
                  "Glorot & Bengio, AISTATS 2010: saturation of top hidden layers with sigmoid",
                  "LeCun et al., 'Efficient BackProp' (1998)")

    def check(self, ev, t):
        worst, gates = [], []
        output = _output_sigmoid(ev)
        for act in ev.activations:
            if act.kind not in ("tanh", "sigmoid") or act is output:
                continue
            frac = nanmedian(act.saturated)
            if np.isfinite(frac) and frac >= t.warn_fraction:
                (gates if act.gating else worst).append((frac, act))
        if gates:
            # Measured: torchvision's EfficientNet-B1..B4 from scratch (an init loss 3-4x ln C) saturate 41-93% of
            # their SE gates while the body learns; the rule's fix (rescaled init) verified worse on them.
            listing = ", ".join(f"{a.name} ({pct(f)})" for f, a in gates)
            yield self.finding(
                "info", "Saturated squeeze-and-excitation gates",
                f"Sigmoid gates of squeeze-and-excitation units in their flat tails: {listing}. A gate near 0 or 1 "
                "switches its channel off or passes it whole, which is what a gate does; the body's activations, "
                "judged on their own, carry the signal.",
                "Nothing to do unless the body's activations saturate too, or the loss does not fall.",
                [a.name for _, a in gates], saturated_fraction={a.name: f for f, a in gates}, gate=True)
        if not worst:
            return
        worst.sort(key=lambda x: -x[0])
        top = worst[0][0]
        names = [a.name for _, a in worst]
        listing = ", ".join(f"{a.name} ({pct(f)})" for f, a in worst)
        diagnosis = (f"{listing} of the {worst[0][1].kind} outputs sit in the flat tails across the probe, where "
                     "the local gradient is under 0.06: those units pass almost no gradient back.")
        fix = ("Scale the weights that feed the activation by gain/sqrt(fan_in) (Kaiming, gain 5/3 for tanh), "
               "or normalise the pre-activations with BatchNorm/LayerNorm:\n\n"
               "W1 = torch.randn(fan_in, n_hidden) * (5/3) / fan_in**0.5\n"
               "# nn.Linear: nn.init.kaiming_normal_(layer.weight, nonlinearity='tanh')")
        onsets = [first_step(a.saturated, t.warn_fraction) for _, a in worst]
        yield self.finding("error" if top >= t.error_fraction else "warning",
                           "Most tanh/sigmoid units are saturated", diagnosis, fix, names,
                           onset=min((s for s in onsets if s is not None), default=None),
                           saturated_fraction={a.name: f for f, a in worst})

    def draw(self, ax, ev, finding):
        from auditor.probe.activations import TANH_SATURATED  # `audit rules` runs without torch

        figures.activation_histograms(ax, ev, finding.layers, step=0, band=TANH_SATURATED)

    metric = "saturated fraction of the worst layer"

    def plan_fix(self, ev, finding):
        acts = [a for a in ev.activations if a.name in finding.layers]
        if not acts:
            return None
        head = ev.matrices()[-1].name if ev.matrices() else None

        def edit(model):
            from auditor.fixes import fan_in_rescale

            for a in acts:
                fan_in_rescale(model, a.units, a.kind, {head})

        return FixPlan("weights feeding the saturated layer rescaled to gain/sqrt(fan_in) (Kaiming, gain 5/3 "
                       "for tanh)", model_edit=edit)

    def measure(self, ev, finding):
        values = [nanmedian(a.saturated) for a in ev.activations if a.name in finding.layers]
        return max(values) if values else None


def _output_sigmoid(ev):
    """The sigmoid that makes the model's probabilities for binary cross-entropy (a VAE's Bernoulli decoder, a
    multi-label head): its outputs near 0 or 1 are predictions, sparse images' background pixels at 0, not
    hidden units that stopped passing gradient; BCE on probabilities cancels its derivative. The last sigmoid
    traced with as many units as the loss input's last dimension, where the spy saw that input come from one."""
    call = ev.loss_call or {}
    if call.get("kind") != "bce" or call.get("squashed_by") != "sigmoid" or not call.get("input_shape"):
        return None
    width = call["input_shape"][-1]
    sigmoids = [a for a in ev.activations if a.kind == "sigmoid" and not a.gating]
    last = max(sigmoids, key=lambda a: a.order, default=None)
    return last if last is not None and last.units == width else None


RULE = SaturatedUnits()
