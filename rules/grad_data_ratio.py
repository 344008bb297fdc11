import numpy as np

from auditor.engine import Rule, Threshold
from auditor.evidence import fmt, is_adaptive, nanmedian
from auditor.report import figures


class GradDataRatio(Rule):
    id = "grad-data-ratio"
    summary = "Layers learn at very different speeds: their gradient-to-data ratios span many decades."
    thresholds = {
        "decades": Threshold(3.0, "warn when the fastest and slowest weight tensors differ by this many decades",
                             "measured: healthy samples span at most 2.0 decades (makemore fixed: the 0.01-scaled "
                             "output layer against the embedding)"),
    }
    why = """
With plain SGD every layer gets the same learning rate, so a layer whose ‖grad‖/‖weight‖ is 1000x
smaller than another's learns 1000x more slowly: in effect it is frozen while the rest trains. The lecture
flags a last layer at 10x the others as a troublemaker; whole decades mean a scale bug: weights
initialised far too large (often hidden by a following BatchNorm, which makes the output blind to the
weight scale while shrinking its gradient), or an input on a wildly different scale.
"""
    example = """
lin = nn.Linear(256, 256); bn = nn.BatchNorm1d(256)
lin.weight.data *= 100     # BatchNorm hides it in the forward pass; the gradient shrinks 100x, the ratio 10^4x
"""
    use_instead = """
nn.init.kaiming_normal_(lin.weight, nonlinearity='relu')   # every layer on the same footing
"""
    known_problems = """
Embeddings are left out: they get gradient only in the rows a batch uses. With an adaptive optimizer (Adam,
RMSprop, ...) the gradient scale is normalised away, so the spread is read on the update-to-data ratio instead.
"""
    references = ("A. Karpathy, makemore part 3 (2022): the gradient:data ratio plot",
                  "You et al., 'Large Batch Training of Convolutional Networks' (LARS), 2017: per-layer ratios")

    def check(self, ev, t):
        adaptive = is_adaptive(ev)
        measure = "update-to-data" if adaptive else "gradient-to-data"
        ratios = {}
        for p in ev.matrices():
            if p.role != "weight":
                continue
            series = p.update_data_ratio if adaptive else p.grad_data_ratio
            r = nanmedian(series[ev.window()])
            if np.isfinite(r) and r > 0:
                ratios[p.name] = float(np.log10(r))
        if len(ratios) < 2:
            return
        slow = min(ratios, key=ratios.get)
        fast = max(ratios, key=ratios.get)
        spread = ratios[fast] - ratios[slow]
        if spread < t.decades:
            return
        yield self.finding(
            "warning", "Layers learn at very different speeds",
            f"The {measure} ratio of {slow} is 10^{fmt(ratios[slow], 2)} against 10^{fmt(ratios[fast], 2)} for "
            f"{fast}: {fmt(spread, 2)} decades apart, so {slow} learns ~{fmt(10 ** spread, 2)}x more slowly "
            f"under {ev.probe.optimizer.split('(')[0]}.",
            f"Re-initialise {slow} with a fan-in scale matched to its activation, so that all layers start on "
            "the same footing:\n\n"
            f"nn.init.kaiming_normal_(model.{slow.removesuffix('.weight')}.weight, nonlinearity='relu')",
            [slow, fast], per_layer_log10=ratios, spread_decades=spread, measure=measure)

    def draw(self, ax, ev, finding):
        figures.grad_data_ratio(ax, ev, finding.layers)


RULE = GradDataRatio()
