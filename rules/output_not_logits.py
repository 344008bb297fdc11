from auditor.engine import Rule, Threshold
from auditor.evidence import fmt
from auditor.probe.checks import probability_floor
from auditor.report import figures


class OutputNotLogits(Rule):
    id = "output-not-logits"
    from_start = True
    summary = "The output fed to cross-entropy is already a probability distribution (softmax applied twice)."
    thresholds = {
        "sum_tolerance": Threshold(1e-3, "rows count as summing to 1 within this",
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
        if not form or form["min"] < -1e-6 or form["max"] > 1 + 1e-6 or form["row_sum_error"] > t.sum_tolerance:
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
            [ev.structure.output_producer] if ev.structure and ev.structure.output_producer else [],
            floor=floor, **form)

    def draw(self, ax, ev, finding):
        figures.loss_curve(ax, ev)
        ax.axhline(finding.evidence["floor"], color="C3", lw=1.5, label="floor with probabilities as logits")
        ax.legend(fontsize=7)


RULE = OutputNotLogits()
