import numpy as np

from auditor.causes import LR_HIGH
from auditor.engine import Rule, Threshold
from auditor.evidence import fmt, pct
from auditor.report import figures


def _wilson_low(k: int, n: int, z: float) -> float:
    """The lower end of Wilson's score interval for k successes in n trials, at z standard errors."""
    from scipy.stats import binomtest, norm

    return float(binomtest(k, n).proportion_ci(confidence_level=2 * norm.cdf(z) - 1, method="wilson").low)


class LossOscillation(Rule):
    id = "loss-oscillation"
    summary = "Updates overshoot: a step raises the loss of the very batch it was computed on, so the loss zig-zags."
    thresholds = {
        "rise": Threshold(0.01, "a step overshoots when its own batch's loss rises by more than this fraction",
                          "measured: on the healthy samples the own-batch loss never rises; a flat, dead network "
                          "shows float-noise rises under 0.1%"),
        "fraction": Threshold(0.25, "warn when at least this fraction of the measured steps overshoot (less the "
                              "standard errors of z)",
                              "measured: 0% on all healthy samples; a period-2 cycle (lr past 2/curvature) "
                              "overshoots on 50% of steps"),
        "min_steps": Threshold(6, "measured steps needed to judge", "a fraction of fewer steps is too coarse"),
        "fitted": Threshold(0.05, "steps whose batch loss is already under this fraction of the loss before any update "
                            "are not judged", "grad-spikes' bar: a fitted batch moves by memorisation noise; "
                            "ViT-L/32 at AdamW 1e-3 (2.30 -> 0.02) 'overshot' by +133% on 4 of 9 steps, all such"),
        "z": Threshold(1.0, "the fraction is judged less this many standard errors (the lower end of Wilson's "
                       "interval): of nine measured steps, one more or fewer must not decide",
                       "measured: MaxViT-T (AdamW 1e-3, learning: 2.33 -> 1.08) overshot on 3 of 9 steps at seed 0 "
                       "and fewer at seeds 1-2; the period-2 sample on 5 of 9. Wilson at z=1: 3 of 9 is 0.20, 4 of 9 "
                       "0.29, 5 of 9 0.38"),
    }
    why = """
A gradient step on a batch is the steepest way down for that batch: with a learning rate below the
stability limit (2 / the sharpest curvature) its loss goes down after the step. When the loss of the same
batch, with the same dropout masks, goes *up*, the step has jumped across the valley to a higher point on the
other side. Repeated, that is the up-down-up zig-zag of an oscillating loss; it converges slowly or not at
all, and a small change in data or schedule tips it into divergence. The probe measures it directly by
scoring each measured step's batch again right after the update.
"""
    example = """
optimizer = torch.optim.SGD(model.parameters(), lr=16)   # past 2/curvature: the loss cycles 0.77, 0.76, 0.77 ...
"""
    use_instead = """
optimizer = torch.optim.SGD(model.parameters(), lr=4)    # or keep the LR and add warm-up / clipping
"""
    known_problems = """
Only steps the probe measures (every --stats-every steps, an odd interval so that a period-2 cycle is seen
in both phases) are checked, and of those only steps whose batch loss is still above 5% of the loss before any
update: on a batch fitted to near zero, a rise of a hundredths is +100%.
"""
    references = ("Cohen et al., 'Gradient Descent on Neural Networks Typically Occurs at the Edge of "
                  "Stability', ICLR 2021", "L. N. Smith, 'Cyclical Learning Rates', WACV 2017")

    def check(self, ev, t):
        before, after = ev.loss, ev.loss_after
        ok = np.isfinite(before) & np.isfinite(after) & (np.abs(before) > 0)
        start = ev.probe.start_loss
        if start is None or not np.isfinite(start):
            finite = before[np.isfinite(before)]
            start = float(finite[0]) if finite.size else None
        if start is not None and start > 0:
            ok &= before > t.fitted * start  # a batch already fitted: relative rises there are noise
        if ok.sum() < t.min_steps or not np.isfinite(before).all():
            return  # too few measured steps, or a NaN run, which loss-nan reports
        rise = (after[ok] - before[ok]) / np.abs(before[ok])
        over = rise > t.rise
        fraction = float(over.mean())
        if _wilson_low(int(over.sum()), int(over.size), t.z) < t.fraction:
            return
        steps = np.flatnonzero(ok)[over]
        yield self.finding(
            "warning", "Updates overshoot: the loss oscillates",
            f"On {over.sum()} of {ok.sum()} measured steps ({pct(fraction)}) the update raised the loss of the "
            f"batch it was computed on, by a median {pct(float(np.median(rise[over])))} (steps "
            f"{', '.join(str(s) for s in steps[:6])}{' ...' if steps.size > 6 else ''}), with {ev.probe.optimizer}. "
            f"A step below the stability limit lowers its own batch's loss; these jump across the valley.",
            f"Lower the learning rate by 3-10x (lr={fmt((ev.probe.lr or 0) / 4)} for a start), or add a warm-up:\n\n"
            "scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=500)",
            [], advice=LR_HIGH, onset=int(steps[0]), fraction=fraction,
            median_rise=float(np.median(rise[over])), steps=steps.tolist(), rises=rise.tolist())

    def draw(self, ax, ev, finding):
        figures.loss_curve(ax, ev, expected=False, mark=finding.evidence.get("steps"))


RULE = LossOscillation()
