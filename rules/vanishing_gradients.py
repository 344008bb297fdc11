import numpy as np

from auditor.engine import Rule, Threshold
from auditor.evidence import depth_profile, fmt, is_adaptive, nanmedian, profile_ends
from auditor.report import figures


def _update_lag(ev) -> float | None:
    """How many decades the updates of the weight tensors nearest the input (first third) lag those nearest
    the output (last third), as ‖Δw‖/‖w‖ medians over the later half of the probe."""
    ratios = [nanmedian(p.update_data_ratio[ev.window()]) for p in ev.matrices() if p.role == "weight"]
    ratios = np.array([r for r in ratios if np.isfinite(r) and r > 0])
    if ratios.size < 3:
        return None
    k = max(1, ratios.size // 3)
    return float(np.log10(np.median(ratios[-k:]) / np.median(ratios[:k])))


class VanishingGradients(Rule):
    id = "vanishing-gradients"
    summary = "The gradient shrinks layer after layer on its way back, so the layers near the input barely learn."
    thresholds = {
        "decades": Threshold(2.0, "warn when the gradient at the first layer is this many decades (powers of "
                             "10) below the last layer's",
                             "measured: healthy ResNet, GPT, transformer and MLP samples stay within 0.5 decade"),
        "update_decades": Threshold(1.0, "with an adaptive optimizer, report only when the updates near the input "
                                    "also lag those near the output by this many decades", "Adam's step is ~lr "
                                    "per element whatever the gradient's scale (Kingma & Ba 2015, 2.1); "
                                    "measured: ALBERT and ELECTRA tiny configs, 2-3 decades of gradient, updates "
                                    "within one decade, learning to 1% of their start"),
        "min_layers": Threshold(3, "layers needed before a depth profile is judged", "a profile needs a slope"),
    }
    why = """
Backpropagation multiplies the gradient by each layer's Jacobian. With saturating activations (sigmoid's
derivative is at most 0.25) or weights initialised too small, each factor is below one and the gradient
decays geometrically with depth: the early layers stop learning, the loss plateaus.
"""
    example = """
layers = [nn.Linear(64, 64), nn.Sigmoid()] * 20       # 0.25^20: nothing reaches the first layer
"""
    use_instead = """
# a non-saturating activation with He/Kaiming init, plus normalisation or residual connections
nn.init.kaiming_normal_(linear.weight, nonlinearity='relu')
block = lambda x: x + mlp(norm(x))
"""
    known_problems = """
A layer that is meant to learn slowly (a frozen-ish embedding, say) can look like a vanishing profile;
check the figure before acting.
"""
    references = ("Hochreiter, 'Untersuchungen zu dynamischen neuronalen Netzen' (1991); Bengio et al. 1994",
                  "Glorot & Bengio, AISTATS 2010", "He et al., 'Deep Residual Learning', CVPR 2016")

    def check(self, ev, t):
        names, scale, source = depth_profile(ev)
        ok = np.isfinite(scale) & (scale > 0)
        if ok.sum() < t.min_layers:
            return
        names = [n for n, k in zip(names, ok, strict=True) if k]
        scale = scale[ok]
        near_input, near_output = profile_ends(scale, source)
        decades = float(np.log10(near_input / near_output))
        if decades > -t.decades:
            return
        lag = _update_lag(ev)
        if is_adaptive(ev) and lag is not None and lag < t.update_decades:
            return  # Adam divides each gradient by its own scale: the layers near the input still move
        diagnosis = (f"Measured on {source}: the gradient near the input ({names[0]} ...) is {fmt(near_input)}, "
                     f"{fmt(-decades, 2)} decades below the {fmt(near_output)} near the output (... {names[-1]}), "
                     f"across {len(names)} layers. The layers near the input "
                     "barely learn.")
        fix = ("Use a non-saturating activation with matching init (ReLU/GELU + Kaiming), add normalisation "
               "(BatchNorm/LayerNorm) or residual connections:\n\n"
               "nn.init.kaiming_normal_(layer.weight, nonlinearity='relu')")
        yield self.finding("warning", "Gradients vanish towards the input", diagnosis, fix, [names[0], names[-1]],
                           profile=dict(zip(names, scale.tolist(), strict=True)), decades=decades, source=source)

    def draw(self, ax, ev, finding):
        figures.depth_profile(ax, *depth_profile(ev), highlight=finding.layers)


RULE = VanishingGradients()
