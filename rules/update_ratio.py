import numpy as np

from auditor.causes import LR_HIGH, LR_LOW
from auditor.engine import FixPlan, Rule, Threshold
from auditor.evidence import end_level, first_update_level, fmt, loss_prefix, pct, update_level
from auditor.report import figures


class UpdateRatio(Rule):
    id = "update-ratio"
    summary = "Each step changes the weights by far more or far less than ~1e-3 of their scale: the LR is off."
    thresholds = {
        "high": Threshold(-1.0, "warn when the median layer's log10 ‖Δw‖/‖w‖ is above this",
                          "lecture guide ~-3; measured healthy recipes: -1.8 (GPT, AdamW 1e-3) to -3.0 "
                          "(Adam 3e-4); -1 means 10% of each weight's scale every step"),
        "error_high": Threshold(0.0, "error above this: every step replaces the weights", "updates >= weights"),
        "first_high": Threshold(-0.8, "warn when the first step's median log10 ratio is above this, whatever "
                                "follows", "measured: healthy recipes' first step -3.5 (makemore) to -1.3 (GPT, "
                                "AdamW 1e-3); a conv net at SGD lr 5: -0.5"),
        "low": Threshold(-4.5, "warn when the median layer's log10 ratio is below this",
                         "lecture: lr 0.001 on its MLP gives ~-5, 'way too slow'"),
        "max_drop_for_low": Threshold(0.5, "only call the LR too low when the loss fell by less than this "
                                      "fraction", "a loss falling fast is not learning too slowly"),
    }
    why = """
The update-to-data ratio ‖Δw‖/‖w‖ (the RMS of the update over the RMS of the weight; for zero-mean
weights the lecture's std(dw)/std(w)) says how much of a weight's scale one optimizer step changes. Around
1e-3 (-3 on the log10 scale) the network learns steadily. Far above, the updates overwrite what was learned
and training is unstable; far below, the network learns so slowly that the run is wasted.
"""
    example = """
optimizer = torch.optim.SGD(model.parameters(), lr=1e-5)  # updates ~1e-7 of the weights
"""
    use_instead = """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)   # pick lr so that log10(‖Δw‖/‖w‖) ~ -3
# or run an LR range test and take the rate just before the loss turns up
"""
    known_problems = """
Adam's first steps are ~lr per element regardless of the gradient, so the ratio is read over the later
half of the probe. Layers that start at zero (biases, zero-init embeddings) and norm gains are left out.
Small-weight layers (an output layer scaled by 0.01) run higher on purpose; the median over layers is judged.
"""
    references = ("A. Karpathy, makemore part 3 (2022): the update:data ratio plot and the 1e-3 guide",
                  "L. N. Smith, 'Cyclical Learning Rates for Training Neural Networks', WACV 2017")

    def check(self, ev, t):
        level, per_layer = update_level(ev)
        if not np.isfinite(level):
            return
        lr = ev.probe.lr
        target = -3.0
        suggestion = f"{lr * 10 ** (target - level):.2g}" if lr else None
        layers = sorted(per_layer, key=per_layer.get, reverse=level > target)
        evidence = dict(median_log10=level, per_layer_log10=per_layer, lr=lr, suggested_lr=suggestion)
        if level > t.high:
            severity = "error" if level > t.error_high else "warning"
            fix = (f"Lower the learning rate (about {suggestion} brings the median ratio near 1e-3):\n\n"
                   f"optimizer = {ev.probe.optimizer.split('(')[0]}(model.parameters(), lr={suggestion})"
                   if suggestion else "Lower the learning rate.")
            yield self.finding(severity, "Updates are too large for the weights: learning rate too high",
                               f"Each step changes the weights by 10^{fmt(level, 2)} of their scale (median over "
                               f"{len(per_layer)} weight tensors, later half of the probe) with "
                               f"{ev.probe.optimizer}; ~10^-3 is the healthy range.", fix, layers[:5], advice=LR_HIGH,
                               **evidence)
            return
        first = first_update_level(ev)
        if np.isfinite(first) and first > t.first_high:
            # The damage of a rate far too high can be done in the first step (units knocked dead, a network
            # that then barely moves), leaving the later half quiet.
            warmup = "scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=200)"
            if suggestion and level > target:
                fix = (f"Lower the learning rate (about {suggestion} brings the later median ratio near 1e-3), or "
                       f"warm it up:\n\noptimizer = {ev.probe.optimizer.split('(')[0]}(model.parameters(), "
                       f"lr={suggestion})\n{warmup}")
            else:
                # The later steps are at or under 1e-3: the rate suits the training that follows, and only the
                # first gradient was large (often a loss that starts far too high). A lower rate would be wrong
                # advice for every later step; a warm-up is the change that touches the first steps alone.
                evidence["suggested_lr"] = None
                fix = (f"Warm the learning rate up (the later steps, at 10^{fmt(level, 2)}, suit this rate; the first "
                       f"gradient is what is large, so see what makes the first loss high):\n\n{warmup}")
            yield self.finding("error" if first > t.error_high else "warning",
                               "The first update rewrites the weights" + (": learning rate too high"
                                                                          if evidence["suggested_lr"] else ""),
                               f"The very first step changed the weights by 10^{fmt(first, 2)} of their scale (median "
                               f"over {len(per_layer)} weight tensors) with {ev.probe.optimizer}; healthy recipes "
                               "start between 10^-3.5 and 10^-1.3. What follows (dead units, a flat loss) is the "
                               "after-effect.", fix, layers[:5], advice=LR_HIGH, onset=0, first_log10=first,
                               **evidence)
            return
        seq = loss_prefix(ev)
        drop = (seq[0] - end_level(ev)) / abs(seq[0]) if seq.size >= 3 and seq[0] else 0
        if level < t.low and drop < t.max_drop_for_low:
            fix = (f"Raise the learning rate (about {suggestion} brings the median ratio near 1e-3):\n\n"
                   f"optimizer = {ev.probe.optimizer.split('(')[0]}(model.parameters(), lr={suggestion})"
                   if suggestion else "Raise the learning rate.")
            yield self.finding("warning", "Updates are tiny against the weights: learning rate too low",
                               f"Each step changes the weights by only 10^{fmt(level, 2)} of their scale (median "
                               f"over {len(per_layer)} weight tensors) with {ev.probe.optimizer}, and the loss fell "
                               f"by {pct(drop)} over the probe. If gradients vanish (see vanishing-gradients), "
                               "fix that "
                               "first: a higher LR will not reach those layers.", fix, layers[:5], loss_drop=drop,
                               advice=LR_LOW,
                               **evidence)

    def draw(self, ax, ev, finding):
        figures.update_ratio(ax, ev, finding.layers)

    metric = "median log10 update-to-data ratio"
    metric_goal = -3.0

    def plan_fix(self, ev, finding):
        lr = finding.evidence.get("suggested_lr")
        return FixPlan(f"learning rate {lr}", lr=float(lr)) if lr else None

    def measure(self, ev, finding):
        return update_level(ev)[0]


RULE = UpdateRatio()
