import math

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
        "off_init": Threshold(10.0, "and only when one of the two ends lies this factor outside every standard "
                              "initialisation of its shape (PyTorch's default, LeCun, Glorot, He fan-in and fan-out, "
                              "N(0, 0.02), N(0, 1) for embeddings)",
                              "measured: GhostNet (timm, SGD) spans 3.8 decades with every layer at its "
                              "initialisation's scale (depthwise convs against the stem), where re-initialising "
                              "changes nothing; the sample's 100x layer lies 40x outside"),
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
Weights behind a gain initialised at zero (a residual block's last BatchNorm gain in timm's ResNets, Goyal
et al. 2017; LayerScale; ReZero) are left out too: that branch is closed on purpose until its gain grows, and
its tiny gradient is the gate, not a scale bug (measured: timm's resnet18d spans 3.4 decades with them,
1.2 without).
"""
    references = ("A. Karpathy, makemore part 3 (2022): the gradient:data ratio plot",
                  "You et al., 'Large Batch Training of Convolutional Networks' (LARS), 2017: per-layer ratios")

    def check(self, ev, t):
        adaptive = is_adaptive(ev)
        measure = "update-to-data" if adaptive else "gradient-to-data"
        ratios = {}
        gated = ev.gated()
        for p in ev.matrices():
            if p.role != "weight" or p.name in gated:
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
        # A spread between layers that all sit at a standard initialisation's scale is the architecture's own
        # (depthwise against dense convs, a 9-weight fan-in against 1152): re-initialising changes nothing.
        params = {p.name: p for p in ev.params}
        off = {name: _off_init(params[name]) for name in (slow, fast)}
        culprit = max(off, key=off.get)
        if off[culprit] < t.off_init:
            return
        yield self.finding(
            "warning", "Layers learn at very different speeds",
            f"The {measure} ratio of {slow} is 10^{fmt(ratios[slow], 2)} against 10^{fmt(ratios[fast], 2)} for "
            f"{fast}: {fmt(spread, 2)} decades apart, so {slow} learns ~{fmt(10 ** spread, 2)}x more slowly "
            f"under {ev.probe.optimizer.split('(')[0]}. {culprit} starts at RMS {fmt(params[culprit].data_rms[0])}, "
            f"{fmt(off[culprit], 2)}x outside every standard initialisation of its shape.",
            f"Re-initialise {culprit} with a fan-in scale matched to its activation, so that all layers start on "
            "the same footing:\n\n"
            f"nn.init.kaiming_normal_(model.{culprit.removesuffix('.weight')}.weight, nonlinearity='relu')",
            [slow, fast], per_layer_log10=ratios, spread_decades=spread, measure=measure,
            off_init=off[culprit])

    def draw(self, ax, ev, finding):
        figures.grad_data_ratio(ax, ev, finding.layers)


def _off_init(p) -> float:
    """How many times outside the span of the standard initialisations of its shape the tensor started (1: inside)."""
    rms = float(p.data_rms[0]) if p.data_rms.size else float("nan")
    if not (np.isfinite(rms) and rms > 0) or len(p.shape) < 2:
        return 1.0
    field = math.prod(p.shape[2:])
    fan_in, fan_out = p.shape[1] * field, p.shape[0] * field
    stds = [1 / math.sqrt(3 * fan_in), math.sqrt(2 / fan_in), math.sqrt(2 / fan_out),
            math.sqrt(2 / (fan_in + fan_out)), 0.02]
    if p.role == "embedding":
        stds.append(1.0)
    return max(min(stds) / rms, rms / max(stds), 1.0)


RULE = GradDataRatio()
