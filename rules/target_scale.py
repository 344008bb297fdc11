import numpy as np

from auditor.engine import FixPlan, Rule, Threshold
from auditor.evidence import end_level, first_update_level, fmt, input_free_loss, learnt_well, target_moments
from auditor.report import figures


def _standardise_targets(mean: float, std: float):
    """A batch transform: the regression targets as (y - mean) / std, with the statistics the probe measured."""
    def transform(batch):
        if not (isinstance(batch, list | tuple) and len(batch) == 2):
            return batch
        x, y = batch
        return type(batch)((x, (y - mean) / max(std, 1e-12)))
    return transform


class TargetScale(Rule):
    id = "target-scale"
    from_start = True
    summary = "Regression targets far from unit scale (prices in dollars, raw counts) that the network cannot reach."
    thresholds = {
        "max_rms": Threshold(10.0, "fire when the targets' RMS, sqrt(mean² + std²), exceeds this and the loss has "
                             "not fallen under `learnt` of the targets' variance",
                             "Bishop 1995, 8.2 and LeCun et al. 1998, 4.3: targets rescaled like the inputs, to "
                             "~1; a default-initialised output layer starts at ~1, as input-scale's bound"),
        "learnt": Threshold(0.5, "... where the loss ended above this fraction of the targets' variance (the loss "
                            "of predicting their mean): a network that gets there copes with the scale",
                            "the refutation's bar (auditor/verify.py): half of what an input-blind model reaches"),
        "first_high": Threshold(-0.8, "... or, wherever it ended, where the first step changed the weights by more "
                                "than 10^this of their scale (gradients as large as the targets, under SGD)",
                                "update-ratio's first_high: healthy recipes' first step -3.5 to -1.3"),
    }
    why = """
A network starts with outputs of about unit scale. Targets in the hundreds of thousands (a price in dollars),
or far from zero compared with their spread (a temperature in kelvin), leave it to grow its output by orders of
magnitude before it can fit anything: the loss is the squared offset, the same with or without the input, and
every gradient is as large as the targets. Adam moves each weight by about its learning rate per step, so the
output climbs by a tiny fraction of the targets per step; SGD takes steps as large as the targets and
overshoots. Either way the first hundreds of steps learn the targets' mean, not the data.
"""
    example = """
y = torch.tensor(df["price"].values)                 # 1e5 .. 1e6
loss = F.mse_loss(model(x), y)
"""
    use_instead = """
y_mean, y_std = y_train.mean(), y_train.std()        # training-set statistics
loss = F.mse_loss(model(x), (y - y_mean) / y_std)     # train on standardised targets
pred = model(x) * y_std + y_mean                      # and map predictions back
"""
    known_problems = """
Read from the targets of torch's mean-squared-error loss (the moments the probe logs every step); a
hand-written ((pred - y) ** 2).mean() hides them. A network that reaches under half of the targets' variance
within the probe copes with their scale and is not flagged, unless its first step was a jolt (SGD's gradient is
as large as the targets; Adam's step is not). The fix changes the targets, so it is proved on a copy in the
replay only; a script makes its own batches.
"""
    references = ("C. M. Bishop, 'Neural Networks for Pattern Recognition' (1995), section 8.2: linear rescaling "
                  "of the input and target variables",
                  "Y. LeCun, L. Bottou, G. Orr, K.-R. Müller, 'Efficient BackProp', 1998, section 4.3")
    metric = "loss at the end over the targets' variance"
    metric_goal = "lower"

    def check(self, ev, t):
        moments, floor = target_moments(ev), input_free_loss(ev)
        if moments is None or floor is None or floor[0] <= 0:
            return
        mean, std = moments
        rms = float(np.hypot(mean, std))
        if rms <= t.max_rms:
            return
        first = first_update_level(ev)
        jolted = bool(np.isfinite(first) and first > t.first_high)
        end = end_level(ev)
        if not np.isfinite(end) or (learnt_well(ev, t.learnt) is not None and not jolted):
            return
        start = ev.probe.start_loss
        began = f"from {fmt(start)} " if start is not None and np.isfinite(start) else ""
        worse = end > floor[0]
        offset = abs(mean) > std
        where = (f"still {fmt(end / floor[0])}x what predicting their mean scores ({fmt(floor[0])}, their variance)"
                 if worse else f"{fmt(end / floor[0])}x their variance ({fmt(floor[0])}, the loss of predicting their "
                 "mean)")
        if jolted and end <= t.learnt * floor[0]:
            why = (f"It learns, but its gradients are as large as the targets: the first step changed the weights by "
                   f"10^{fmt(first, 2)} of their scale, which is what the units and weights below show.")
        else:
            why = (f"The network is still growing its output towards the targets' {'offset' if offset else 'scale'}, "
                   "and the loss measures that distance more than anything learnt from the data.")
        yield self.finding(
            "error" if worse else "warning", "Regression targets are far from unit scale",
            f"The targets have mean {fmt(mean)} and std {fmt(std)} (RMS {fmt(rms)}; a network starts with outputs "
            f"near 1). Over {ev.probe.steps_run} steps the loss went {began}to {fmt(end)}, {where}. {why}",
            f"Standardise the targets with training-set statistics and map predictions back:\n\n"
            f"y_mean, y_std = {fmt(mean)}, {fmt(std)}           # y_train.mean(), y_train.std()\n"
            "loss = F.mse_loss(model(x), (y - y_mean) / y_std)\n"
            "pred = model(x) * y_std + y_mean                # at inference",
            [], target_mean=mean, target_std=std, rms=rms, end=end, variance=floor[0],
            first_log10=first if jolted else None)

    def plan_fix(self, ev, finding):
        e = finding.evidence
        return FixPlan(f"targets standardised with the probe's mean {fmt(e['target_mean'])} and std "
                       f"{fmt(e['target_std'])}", batch_transform=_standardise_targets(e["target_mean"],
                                                                                       e["target_std"]))

    def measure(self, ev, finding):
        floor, end = input_free_loss(ev), end_level(ev)
        return float(end / floor[0]) if floor and floor[0] > 0 and np.isfinite(end) else None

    def draw(self, ax, ev, finding):
        figures.loss_curve(ax, ev)
        ax.axhline(finding.evidence["variance"], color="C2", ls=":", lw=1.5,
                   label=f"predicting the targets' mean: {fmt(finding.evidence['variance'])}")
        ax.legend(fontsize=7, loc="upper right")


RULE = TargetScale()
