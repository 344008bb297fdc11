import numpy as np

from auditor.engine import FixPlan, Rule, Threshold
from auditor.evidence import fmt
from auditor.report import figures


class InputScale(Rule):
    id = "input-scale"
    from_start = True
    reads = ("input_stats",)  # measured on the first batches; a copy that did not measure them cannot judge
    unverified_because = ("the input it names is not the batch's own x (one of several inputs, or made inside the "
                          "model or your training_step): the auditor standardises only a batch's x")
    summary = "Inputs far from a standardised range (raw 0-255 pixels, features on wildly different scales)."
    thresholds = {
        "max_rms": Threshold(10.0, "warn when a feature's (or channel's) RMS, sqrt(mean² + std²), exceeds this",
                             "LeCun et al. 1998: inputs should be zero-mean with unit variance; raw pixels "
                             "give ~130, standardised data ~1"),
        "spread": Threshold(100.0, "warn when the largest feature's reach (its largest magnitude) is this many times "
                            "the median feature's",
                            "LeCun et al. 1998: equal variances keep one learning rate right for every weight"),
    }
    why = """
The first layer's initialisation assumes unit-scale inputs. Raw pixels (0-255) or unscaled features make the
first pre-activations hundreds of times too large, saturating or killing units and forcing a tiny learning
rate; features on very different scales make the loss surface a narrow valley where one learning rate is too
big for some weights and too small for others.
"""
    example = """
X = torch.tensor(images, dtype=torch.float32)          # 0..255
"""
    use_instead = """
mean, std = X.mean(dim=(0, 2, 3), keepdim=True), X.std(dim=(0, 2, 3), keepdim=True)
X = (X - mean) / std                                    # per channel; statistics of the training set
"""
    references = ("Y. LeCun, L. Bottou, G. Orr, K.-R. Müller, 'Efficient BackProp', 1998, section 4.3",)

    def check(self, ev, t):
        s = ev.input_stats
        if not s:
            return
        mean, std = np.array(s["mean"]), np.array(s["std"])
        if not (np.isfinite(mean).all() and np.isfinite(std).all()):
            return  # NaN in the data is loss-nan's finding (it counts them)
        rms = np.sqrt(mean**2 + std**2)
        # The largest feature's reach (largest magnitude) over the typical feature's, not the stds' extremes: pixels
        # of a flattened sparse image share their range (0..1) however rarely the border ones are lit (their std,
        # and their reach where strokes have soft tails, is tiny), where a feature in dollars beside features in
        # years stands out from the median.
        reach = np.array(s.get("reach", std), dtype=float)
        live = reach[(std > 0) & (reach > 0)]
        spread = float(live.max() / np.median(live)) if live.size else 1.0
        worst = int(np.argmax(rms))
        if rms[worst] <= t.max_rms and spread <= t.spread:
            return
        unit = "channel" if s["layout"] == "channels" else "feature"
        which = f"What {s['layer']}, the first weight layer, receives: " if not s.get("direct", True) else ""
        yield self.finding(
            "warning", "Inputs are not standardised",
            f"{which}Input values range from {fmt(s['min'])} to {fmt(s['max'])}; {unit} {worst} has mean "
            f"{fmt(mean[worst])} and std {fmt(std[worst])} (RMS {fmt(rms[worst])}, expected ~1), and the {unit}s' "
            f"largest values reach {fmt(spread)}x the median {unit}'s.",
            "Standardise each " + unit + " with training-set statistics, in the dataset or the first line of "
            "forward:\n\nx = (x - mean) / std      # mean, std per " + unit + " over the training set",
            [], max_rms=float(rms[worst]), spread=spread, mean=s["mean"], std=s["std"])

    def draw(self, ax, ev, finding):
        s = ev.input_stats
        labels = [str(i) for i in range(len(s["mean"]))][:40]
        rms = np.sqrt(np.array(s["mean"]) ** 2 + np.array(s["std"]) ** 2)[:40]
        figures.bars(ax, labels, list(np.maximum(rms, 1e-12)), "RMS of the input, per " + (
            "channel" if s["layout"] == "channels" else "feature"), log=True, guide=1.0, guide_label="standardised")

    metric = "largest per-feature RMS of the inputs"

    def plan_fix(self, ev, finding):
        from auditor.fixes import standardiser  # `audit rules` runs without torch
        s = ev.input_stats
        if not s.get("direct", True):
            return None  # not the batch's own x: one of several inputs, or made in forward or a training_step
        return FixPlan("inputs standardised per " + ("channel" if s["layout"] == "channels" else "feature") +
                       " with the probe's mean and std", batch_transform=standardiser(s["mean"], s["std"]))

    def measure(self, ev, finding):
        s = ev.input_stats
        return float(np.max(np.sqrt(np.array(s["mean"]) ** 2 + np.array(s["std"]) ** 2))) if s else None


RULE = InputScale()
