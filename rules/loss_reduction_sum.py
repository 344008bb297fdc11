import math

from auditor.causes import LR_HIGH
from auditor.engine import FixPlan, Rule, Threshold
from auditor.evidence import end_level, first_update_level, fmt, is_adaptive, update_level


class LossReductionSum(Rule):
    id = "loss-reduction-sum"
    from_start = True
    summary = ("A loss summed over the batch (reduction='sum') under SGD, with a rate tuned for the mean: every "
               "step is as many times too large as the terms summed.")
    thresholds = {
        "first_high": Threshold(-1.3, "warn when the first step's median log10 ‖Δw‖/‖w‖, or the later steps' median, "
                                "is above this: beyond every healthy recipe's", "measured (update-ratio's "
                                "calibration): healthy recipes' first step -3.5 (makemore) to -1.3 (GPT, AdamW "
                                "1e-3); the sample's sum over 64 at SGD 0.05: -0.87, its last layer's units "
                                "killed in training"),
        "min_terms": Threshold(8, "only where the loss sums at least this many terms",
                               "by construction: a sum over a few outputs per sample (a VAE's latent terms) is a "
                               "modelling choice that scales the step less than a decade, not a batch scaling"),
    }
    why = """
With `reduction="sum"` the loss, and with it every gradient, grows with the number of terms summed: the batch
size, times the tokens or pixels per sample where those are summed too. Under SGD the step is the rate times
the gradient, so a rate that suits the mean (0.05, 0.1: the rates recipes quote) is hundreds of times too
large for the sum, and the first steps rewrite the weights. Adam-family optimizers divide the gradient by its
own running scale and do not care (pytorch/examples' VAE sums its BCE under Adam, correctly).
"""
    example = """
criterion = nn.CrossEntropyLoss(reduction="sum")
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)    # tuned for the mean
"""
    use_instead = """
criterion = nn.CrossEntropyLoss()                                         # the mean: the step does not grow with B
"""
    known_problems = ("A loss summed by hand (`(pred - y).pow(2).sum()`) is not recognised; only a loss function's "
                      "own reduction='sum' is.")
    references = ("PyTorch docs, torch.nn.CrossEntropyLoss: reduction",
                  "Goyal et al., 'Accurate, Large Minibatch SGD' (2017): the rate and the batch, under the mean")

    def check(self, ev, t):
        call = ev.loss_call or {}
        if call.get("reduction") != "sum" or is_adaptive(ev) or not ev.probe.lr:
            return
        terms = _terms(call)
        if terms < t.min_terms:
            return
        first, later = first_update_level(ev), update_level(ev)[0]
        high = max((v for v in (first, later) if math.isfinite(v)), default=float("nan"))
        if not high > t.first_high:
            return
        lr = ev.probe.lr
        yield self.finding(
            "warning", "The loss is summed over the batch, and the rate is tuned for its mean",
            f"The loss sums its {terms} terms (reduction='sum'), so every gradient is {terms}x the mean's, and "
            f"{ev.probe.optimizer} steps by the rate times the gradient: the first step changed the weights by "
            f"10^{fmt(first, 2)} of their scale, the later ones by 10^{fmt(later, 2)} (healthy recipes: 10^-3.5 "
            f"to 10^-1.3). At lr {lr:g} the sum takes the step the mean would take at {lr * terms:.3g}.",
            "Average the loss instead of summing it (or divide the rate by the terms summed):\n\n"
            "criterion = nn.CrossEntropyLoss()          # reduction='mean'\n"
            f"# or keep the sum: torch.optim.SGD(params, lr={lr / terms:.3g})",
            [], onset=0, advice=LR_HIGH, terms=terms, first_log10=first, later_log10=later)

    metric = "loss over the probe's last fifth"

    def plan_fix(self, ev, finding):
        n, lr = finding.evidence["terms"], ev.probe.lr
        return FixPlan(f"learning rate {lr / n:.3g} (the step reduction='mean' takes at lr {lr:g})", lr=lr / n)

    def measure(self, ev, finding):
        return end_level(ev)


def _terms(call: dict) -> int:
    """How many terms the loss sums: one per sample (and position) for cross-entropy and NLL, whose class
    dimension is the second; one per element for the elementwise losses."""
    shape = call.get("input_shape") or []
    if not shape:
        return 1
    n = math.prod(shape)
    if call.get("kind") in ("cross_entropy", "nll") and len(shape) >= 2:
        n //= max(shape[1], 1)
    return int(n)


RULE = LossReductionSum()
