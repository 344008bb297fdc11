import numpy as np

from auditor.engine import Rule, Threshold
from auditor.evidence import fmt, loss_prefix


class LossDivergence(Rule):
    id = "loss-divergence"
    summary = "The loss grows over the probe instead of falling."
    thresholds = {
        "factor": Threshold(2.0, "error when the loss at the end of the probe is this many times its start",
                            "measured: healthy samples end 10-95% below their start; doubling is never noise"),
        "min_steps": Threshold(10, "steps needed to judge the curve", "the start and end windows need samples"),
        "of_initial": Threshold(0.5, "... and the end at least this fraction of the loss at initialisation: a loss "
                                "that fell within the first steps (the start window then sits near zero) and "
                                "climbs back part of the way is instability after a fast fit, not divergence",
                                "measured: torchvision's Swin-T at seed 1 fell from 2.36 to 0.01 in 5 steps and ended "
                                "at 0.43, 0.18 of its first loss, 4.3x its first tenth's median"),
    }
    why = """
Gradient descent on a smooth loss with a small enough step always goes down. A loss that climbs steadily
means the steps overshoot: the learning rate is above the stability limit of the loss surface (2/L for
curvature L), or a bug makes the update point uphill (a sign error in the loss, maximising instead).
"""
    example = """
optimizer = torch.optim.SGD(model.parameters(), lr=2.0)   # far above 2/L
"""
    use_instead = """
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)   # guards against rare large steps
"""
    known_problems = "A warm-up schedule that raises the LR during the probe is not modelled."
    references = ("L. N. Smith, WACV 2017: the LR range test, where the loss turns up",
                  "Nesterov, 'Introductory Lectures on Convex Optimization' (2004): the 2/L step-size limit")

    def check(self, ev, t):
        seq = loss_prefix(ev)
        if seq.size < t.min_steps:
            return
        k = max(2, seq.size // 10)
        start, end = float(np.median(seq[:k])), float(np.median(seq[-k:]))
        if start <= 0 or end < t.factor * start:
            return
        first = ev.probe.start_loss if ev.probe.start_loss is not None and np.isfinite(ev.probe.start_loss) \
            else float(seq[0])
        if end < t.of_initial * first:
            return  # far below where it began: it learnt, then lost some of it
        yield self.finding(
            "error", "Loss diverges",
            f"The loss rose from {fmt(start)} (median of the first {k} steps) to {fmt(end)} (last {k} steps), "
            f"{fmt(end / start)}x, with {ev.probe.optimizer}.",
            "Lower the learning rate (try 10x lower) and clip gradients:\n\n"
            "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)",
            [], start=start, end=end, ratio=end / start)


RULE = LossDivergence()
