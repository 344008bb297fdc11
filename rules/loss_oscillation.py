import numpy as np

from auditor.engine import Rule, Threshold
from auditor.evidence import fmt, loss_prefix, pct, smooth


class LossOscillation(Rule):
    id = "loss-oscillation"
    summary = "The loss zig-zags step to step far beyond batch noise: the learning rate is too high."
    thresholds = {
        "amplitude": Threshold(0.15, "warn when the step-to-step swing is this fraction of the loss level",
                               "measured: batch noise on the healthy samples is 1-27% of the level "
                               "(27%: a ResNet near zero loss)"),
        "autocorr": Threshold(-0.5, "and the lag-1 autocorrelation of the swings is below this (up, down, up, ...)",
                              "measured: batch noise on the healthy samples gives -0.26 to 0.11; "
                              "an overshooting optimizer alternates"),
        "min_steps": Threshold(20, "steps needed to judge the curve", "the autocorrelation needs samples"),
    }
    why = """
When the step size exceeds the curvature's stability limit along some direction, each update jumps across
the valley: the loss goes up, down, up. It may still drift downwards, but slowly and unstably, and a small
change in data or schedule tips it into divergence.
"""
    example = """
optimizer = torch.optim.SGD(model.parameters(), lr=1.5)   # just under divergence
"""
    use_instead = """
optimizer = torch.optim.SGD(model.parameters(), lr=0.3)   # or keep the LR and add momentum/warm-up
"""
    known_problems = """
Alternating batches of very different difficulty (an unshuffled loader cycling between two sources) also
zig-zag; shuffle before concluding it is the learning rate.
"""
    references = ("L. N. Smith, WACV 2017", "Cohen et al., 'Gradient Descent on Neural Networks Typically Occurs "
                  "at the Edge of Stability', ICLR 2021")

    def check(self, ev, t):
        seq = loss_prefix(ev)
        if seq.size < t.min_steps:
            return
        trend = smooth(seq, 9)
        resid = seq - trend
        level = float(np.median(np.abs(trend)))
        if level <= 0:
            return
        amplitude = float(np.median(np.abs(resid))) / level
        if np.std(resid[:-1]) == 0 or np.std(resid[1:]) == 0:
            return
        autocorr = float(np.corrcoef(resid[:-1], resid[1:])[0, 1])
        if amplitude < t.amplitude or autocorr > t.autocorr:
            return
        yield self.finding(
            "warning", "Loss oscillates",
            f"Step to step the loss swings by {pct(amplitude)} of its level, alternating up and down "
            f"(lag-1 autocorrelation {fmt(autocorr, 2)}), with {ev.probe.optimizer}.",
            "Lower the learning rate by 3-10x, or add a warm-up:\n\n"
            "scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=500)",
            [], amplitude=amplitude, autocorr=autocorr)


RULE = LossOscillation()
