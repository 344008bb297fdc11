import numpy as np

from auditor.engine import Rule, Threshold
from auditor.evidence import fmt, pct, target_moments
from auditor.report import figures


class InputIndependence(Rule):
    id = "input-independence"
    reads = ("zeroed_inputs",)
    summary = "The loss with the inputs zeroed is as good as with the real inputs: the model ignores its input."
    thresholds = {
        "max_gap": Threshold(0.001, "error when zeroing the inputs changes the trained model's loss by less than "
                             "this fraction", "measured: zeroing changes the loss by 20%+ on every healthy "
                             "sample; a model that ignores its input gives exactly 0"),
        "max_target_rms": Threshold(10.0, "no verdict where the regression targets' RMS exceeds this: both losses "
                                    "are then the squared distance to the targets' offset, whatever the input",
                                    "target-scale's max_rms: that rule names the scale"),
    }
    why = """
A model that has learnt anything from its inputs does worse when they are replaced by zeros. If it does
exactly as well, its predictions do not depend on the input at all: it has only learnt the label
distribution, because the input is multiplied by a zero buffer, overwritten, detached from the wrong
tensor, or never used. The probe scores the trained copy on the same batches with and without inputs.
"""
    example = """
self.register_buffer("scale", torch.zeros(n_in))   # meant to be filled from data statistics, never was
def forward(self, x):
    return self.net(x * self.scale)
"""
    use_instead = """
self.register_buffer("scale", torch.ones(n_in))    # or set it from the training data before training
"""
    references = ("A. Karpathy, 'A Recipe for Training Neural Networks' (2019): 'input-independent baseline'",)

    def check(self, ev, t):
        z = ev.zeroed_inputs
        if not z:
            return
        real, zeroed = float(np.mean(z["real"])), float(np.mean(z["zeroed"]))
        if not (np.isfinite(real) and np.isfinite(zeroed)) or real <= 0:
            return
        moments = target_moments(ev)
        if moments is not None and np.hypot(*moments) > t.max_target_rms:
            return
        gap = abs(zeroed - real) / real
        if gap >= t.max_gap:
            return
        z0 = ev.zeroed_inputs_init
        from_init = bool(z0) and _gap(z0) < t.max_gap
        when = ("It does so from the start, before any update: the input is cut off in the model itself. "
                if from_init else "At initialisation it did depend on it: training drove it there. ")
        yield self.finding(
            "error", "The model ignores its input",
            f"After the probe, the loss on real inputs is {fmt(real)} and on the same batches with every input set "
            f"to zero {fmt(zeroed)} (a {pct(gap)} difference): the predictions do not depend on the input. {when}",
            "Trace the input through forward (print x.abs().mean() after each step) and find where it is "
            "multiplied by zero, overwritten or dropped:\n\n"
            "h = self.net(x)                       # the argument, not a stored or zero tensor",
            [], onset=0 if from_init else ev.probe.steps_run, real=real, zeroed=zeroed, gap=gap, from_init=from_init)

    def draw(self, ax, ev, finding):
        figures.bars(ax, ["real inputs", "inputs set to 0"], [finding.evidence["real"], finding.evidence["zeroed"]],
                     f"loss after the probe ({ev.probe.loss_fn})")


def _gap(z) -> float:
    real, zeroed = float(np.mean(z["real"])), float(np.mean(z["zeroed"]))
    return abs(zeroed - real) / real if real > 0 and np.isfinite(real) and np.isfinite(zeroed) else float("inf")


RULE = InputIndependence()
