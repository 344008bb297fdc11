import math

import numpy as np

from auditor.engine import Rule, Threshold
from auditor.evidence import fmt
from auditor.report import figures

# softplus(-1): the least BCE-with-logits loss of a positive label when the "logit" is a probability <= 1.
BCE_FLOOR = math.log1p(math.exp(-1.0))


class OutputNotLogits(Rule):
    id = "output-not-logits"
    from_start = True
    summary = ("The loss is fed probabilities where it expects logits (softmax before cross-entropy, sigmoid "
               "before BCEWithLogitsLoss) or NLLLoss gets no log_softmax.")
    thresholds = {
        "sum_tolerance": Threshold(1e-3, "rows count as summing to 1 (log-probability rows: logsumexp 0) within this",
                                   "float32 softmax sums to 1 within ~1e-6; logits essentially never do"),

    }
    why = """
`F.cross_entropy` and `nn.CrossEntropyLoss` apply log-softmax themselves and expect raw scores (logits).
Given probabilities in [0, 1], the model can only move each score by 1: even a perfect prediction has
loss log(e + C - 1) - 1 (1.46 for 10 classes), the gradients are squashed by the softmax's Jacobian, and
training crawls to a floor it cannot pass.
"""
    example = """
def forward(self, x):
    return self.net(x).softmax(dim=-1)          # then F.cross_entropy(output, target)
"""
    use_instead = """
def forward(self, x):
    return self.net(x)                           # logits; softmax only at inference, if at all
"""
    references = ("PyTorch docs, torch.nn.CrossEntropyLoss: 'The input is expected to contain the unnormalized "
                  "logits for each class'",)

    def check(self, ev, t):
        form = ev.output_form
        if not form or not all(np.isfinite(v) for k, v in form.items() if isinstance(v, float)):
            return  # a NaN output is loss-nan's finding; NaN compares false with every bound
        where = [ev.structure.output_producer] if ev.structure and ev.structure.output_producer else []
        if form["loss"] == "cross_entropy":
            yield from self._softmax(form, where, t)
        elif form["loss"] == "bce_logits":
            yield from self._sigmoid(form, where, t)
        elif form["loss"] == "nll":
            yield from self._not_log_probs(form, where, t)

    def _softmax(self, form, where, t):
        from auditor.probe.checks import probability_floor  # `audit rules` runs without torch
        if form["min"] < -1e-6 or form["max"] > 1 + 1e-6 or form["row_sum_error"] > t.sum_tolerance:
            return
        floor = probability_floor(form["classes"])
        yield self.finding(
            "error", "The output is already softmax probabilities, not logits",
            f"Every output row lies in [{fmt(form['min'])}, {fmt(form['max'])}] and sums to 1 (largest deviation "
            f"{fmt(form['row_sum_error'])}) over the {form['classes']} classes, and it goes into cross-entropy, "
            f"which applies softmax again. The best loss this model can ever reach is {fmt(floor)} "
            f"(log(e + C - 1) - 1), not 0.",
            "Return the logits and let the loss apply the softmax:\n\n"
            "return self.head(h)                  # not self.head(h).softmax(-1)\n"
            "probs = model(x).softmax(-1)         # only where probabilities are needed",
            where, floor=floor, **form)

    def _sigmoid(self, form, where, t):
        # The range alone cannot tell: a fresh head with a positive bias can put every raw logit in (0, 1). The
        # probe saw the sigmoid itself make the loss's input (auditor/probe/lossspy.py); the range confirms it.
        if form.get("squashed_by") != "sigmoid" or not (form["min"] > 0 and form["max"] < 1):
            return
        floor = BCE_FLOOR
        yield self.finding(
            "error", "A sigmoid comes before BCEWithLogitsLoss, which applies its own",
            f"Every output lies in ({fmt(form['min'])}, {fmt(form['max'])}) with mean {fmt(form['mean'])}: "
            "probabilities, fed to binary_cross_entropy_with_logits, which applies the sigmoid again. The "
            f"model can move each probability by at most 1, so a positive label can never score below "
            f"{fmt(floor)} and the gradients are squashed twice.",
            "Return the logits and keep BCEWithLogitsLoss (numerically safer than sigmoid + BCELoss):\n\n"
            "return self.head(h)                  # not torch.sigmoid(self.head(h))\n"
            "loss_fn = nn.BCEWithLogitsLoss()",
            where, floor=floor, **form)

    def _not_log_probs(self, form, where, t):
        if form["row_sum_error"] <= t.sum_tolerance:
            return  # log_softmax before NLLLoss: correct
        probabilities = form["min"] >= -1e-6 and form["max"] <= 1 + 1e-6
        fed = "probabilities (a softmax)" if probabilities else "raw scores"
        yield self.finding(
            "error", f"NLLLoss is fed {'probabilities' if probabilities else 'raw scores'}, not log-probabilities",
            f"NLLLoss expects log-probabilities (rows whose exp sums to 1), but it gets {fed}: the rows' "
            f"logsumexp is off 0 by up to {fmt(form['row_sum_error'])}. NLL then just negates the target's "
            "score, which can fall without bound" + (" or is stuck in [0, 1]" if probabilities else "") + ".",
            "Apply log_softmax before NLLLoss, or feed the logits to cross_entropy, which does both:\n\n"
            "loss = F.nll_loss(F.log_softmax(logits, dim=-1), y)   # or F.cross_entropy(logits, y)",
            where, floor=None, **form)

    def draw(self, ax, ev, finding):
        figures.loss_curve(ax, ev)
        if finding.evidence.get("floor") is not None:
            ax.axhline(finding.evidence["floor"], color="C3", lw=1.5, label="floor with probabilities as logits")
            ax.legend(fontsize=7)


RULE = OutputNotLogits()
