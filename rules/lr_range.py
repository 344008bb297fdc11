import numpy as np

from auditor.causes import LR_HIGH, LR_LOW
from auditor.engine import FixPlan, Rule, Threshold
from auditor.evidence import best_sweep_loss, end_level, floor_tolerance, fmt, fresh_level, input_free_loss
from auditor.report import figures


class LrRange(Rule):
    id = "lr-range"
    reads = ("lr_range",)
    from_start = True
    summary = "An LR range test puts your learning rate far outside the range where the loss falls."
    thresholds = {
        "too_high": Threshold(5.0, "warn when your LR is this many times the rate at the test's loss minimum",
                              "measured: healthy samples sit at 0.05-1.1x that rate"),
        "prior_margin": Threshold(0.97, "judge only when some rate of the sweep takes the loss below this fraction "
                                  "of the label-frequency entropy", "a sweep that never beats predicting the "
                                  "label frequencies has no good range (label-problems' bar)"),
        "noise_z": Threshold(2.0, "... or within this many standard errors of that floor's batch-to-batch spread",
                             "label-problems' noise_z, measured there; its own option, so that overriding one rule's "
                             "bar does not move the other's unseen"),
        "blind_z": Threshold(2.0, "where the raw inputs show no sign of carrying their labels (within this many "
                             "standard errors of chance), the sweep's best is read on samples its copy had not "
                             "trained on", "label-problems' blind_z, its own option for the same reason as noise_z"),
        "too_low": Threshold(1000.0, "warn when your LR is this many times below the rate at the loss minimum",
                             "measured: healthy samples sit at most 22x below it"),
    }
    why = """
The LR range test (Smith 2017) trains a copy of the model for a few dozen steps while the learning rate
grows exponentially, and records the loss: it falls fastest in the useful range and blows up past it. A
learning rate an order of magnitude beyond the blow-up point diverges or oscillates; three orders below the
useful range wastes the run. The probe runs the test with your optimizer from the same initial weights and
restores nothing it did not copy.
"""
    example = """
optimizer = torch.optim.Adam(model.parameters(), lr=1e-6)
"""
    use_instead = """
optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)   # inside the range the test reports
"""
    known_problems = """
The test is short (80 steps from 1e-6 to 10) and noisy, so its verdict is overruled by the replay itself: a
rate whose own training ended below the lowest loss of the whole sweep is not reported. The suggestion (a
tenth of the rate at the loss minimum, fastai's reading) is a starting point, and schedules with warm-up
change what a good peak rate is. The rate judged is the peak your scheduler climbs to where it records one
(OneCycleLR's max_lr, the base rate of a LambdaLR warm-up), else the highest rate seen: a warm-up set by hand
at each step and longer than the probe is judged by its first rates.
"""
    references = ("L. N. Smith, 'Cyclical Learning Rates for Training Neural Networks', WACV 2017",
                  "fastai, Learner.lr_find")

    def check(self, ev, t):
        r, lr = ev.lr_range, ev.probe.lr
        if not r or r.get("suggested") is None or not lr:
            return
        # A warm-up seen only in its first steps: the rate to judge is the peak its scheduler will reach.
        seen, lr = lr, max(lr, ev.probe.scheduled_lr or 0.0)
        floor, swept, end = input_free_loss(ev), best_sweep_loss(ev, t.blind_z), end_level(ev)
        if floor and floor[0] > 0 and swept is not None:
            fresh, steps = fresh_level(ev)
            if swept >= floor[0] - floor_tolerance(floor, t.prior_margin, t.noise_z, 5) and \
                    fresh >= floor[0] - floor_tolerance(floor, t.prior_margin, t.noise_z, steps):
                return  # no rate learns anything a model blind to its input could not: no good range to compare with
        if swept is not None and np.isfinite(end) and end <= swept:
            return  # the replay at your own rate ended below anything the sweep reached: the rate is not the problem
        high = r["good_high"]
        if lr > t.too_high * high:
            verdict, title = f"{fmt(lr / high)}x above", "Learning rate far above the range test's good range"
            advice = LR_HIGH
        elif lr < high / t.too_low:
            verdict, title = f"{fmt(high / lr)}x below", "Learning rate far below the range test's good range"
            advice = LR_LOW
        else:
            return
        yield self.finding(
            "warning", title,
            f"Your learning rate {fmt(lr)}"
            f"{f' (the peak your scheduler climbs to; {fmt(seen)} in the steps seen)' if lr > seen else ''} is "
            f"{verdict} {fmt(high)}, where the loss bottoms out in an LR range "
            f"test with {ev.probe.optimizer.split('(')[0]} (it falls fastest near {fmt(r['good_low'])}). "
            f"Suggested: {fmt(r['suggested'])}.",
            f"Start from the suggested rate:\n\nfor g in optimizer.param_groups:\n    g['lr'] = {fmt(r['suggested'])}",
            [], advice=advice, lr=lr, suggested=r["suggested"], good_low=r["good_low"], good_high=high)

    def draw(self, ax, ev, finding):
        r = ev.lr_range
        figures.curves(ax, {"loss during the sweep": (r["lrs"], r["losses"])}, "learning rate",
                       f"loss ({ev.probe.loss_fn})", logx=True,
                       logy=bool(np.nanmax(r["losses"]) > 20 * max(np.nanmin(r["losses"]), 1e-12)),
                       vlines={"your lr": ev.probe.lr, "suggested": r["suggested"], "loss minimum": r["good_high"]})

    metric = "training loss at the end of the probe (median of the last 10 steps)"
    needs_checks = True

    def plan_fix(self, ev, finding):
        return FixPlan(f"learning rate {fmt(finding.evidence['suggested'])} (the range test's suggestion)",
                       lr=finding.evidence["suggested"])

    def measure(self, ev, finding):
        return float(np.nanmedian(ev.loss[-10:]))


RULE = LrRange()
