from auditor.engine import FixPlan, Rule, Threshold
from auditor.evidence import fmt, pct
from auditor.report import figures


def _heavy(ev, t) -> list[tuple[str, float]]:
    return [(name, p) for name, p in ev.dropouts if p >= t.max_p]


def _complement(names: list[str]):
    """A model edit: each named dropout module's p replaced by 1 - p (the rate that was meant to be kept)."""
    def edit(model):
        for name in names:
            module = model.get_submodule(name)
            module.p = 1.0 - module.p
    return edit


class DropoutRate(Rule):
    id = "dropout-rate"
    from_start = True
    summary = "A dropout layer drops most of its units: p is the probability to drop, not to keep."
    thresholds = {
        "max_p": Threshold(0.8, "warn when a dropout layer's p is at least this",
                           "Srivastava et al. 2014 drop 0.5 of hidden and 0.2 of input units; the healthy zoo's "
                           "largest is 0.5 (AlexNet, VGG, EfficientNet-B7); TensorFlow 1's keep_prob=0.8 or 0.9 "
                           "ported as nn.Dropout(0.8) or (0.9)"),
    }
    why = """
`nn.Dropout(p)` zeroes each unit with probability p and scales the survivors by 1/(1-p). TensorFlow 1's
`tf.nn.dropout(x, keep_prob)` took the probability to keep, so a port that copies the number (keep_prob=0.9
becomes nn.Dropout(0.9)) drops 90% of the units: each step trains a tenth of the layer, with its output scaled
by ten, and the network learns slowly and noisily. No standard recipe drops more than half.
"""
    example = """
self.drop = nn.Dropout(0.9)      # meant: keep 90%
"""
    use_instead = """
self.drop = nn.Dropout(0.1)      # p is the probability to drop
"""
    known_problems = """
Read from the model's dropout modules (nn.Dropout and its 1-, 2- and 3-d forms, in the model and in
nn.Transformer's layers); a functional F.dropout(x, p) in forward is not seen, nor nn.MultiheadAttention's own
dropout argument.
"""
    references = ("N. Srivastava et al., 'Dropout: A Simple Way to Prevent Neural Networks from Overfitting', "
                  "JMLR 2014 (retain 0.5 of hidden units, 0.8 of inputs)",
                  "PyTorch docs, torch.nn.Dropout: 'p: probability of an element to be zeroed'")
    metric = "largest dropout rate"

    def check(self, ev, t):
        heavy = _heavy(ev, t)
        if not heavy:
            return
        name, p = max(heavy, key=lambda item: item[1])
        others = f" (and {len(heavy) - 1} more at p >= {fmt(t.max_p)})" if len(heavy) > 1 else ""
        yield self.finding(
            "warning", "Dropout drops most of its units",
            f"{name} is nn.Dropout(p={fmt(p)}){others}: in training it zeroes {pct(p)} of its units and scales "
            f"the rest by {fmt(1 / (1 - p), 2)}, so each step trains a {pct(1 - p)} slice of the layer. PyTorch's p "
            f"is the probability to drop; a keep probability of {fmt(p)} (TensorFlow 1's keep_prob) is "
            f"nn.Dropout({fmt(1 - p)}).",
            f"Use the drop probability:\n\nnn.Dropout({fmt(1 - p)})        # keeps {pct(p)} of the units",
            [n for n, _ in heavy[:4]], dropouts=[[n, q] for n, q in heavy], p=p)

    def plan_fix(self, ev, finding):
        names = [n for n, _ in finding.evidence["dropouts"]]
        return FixPlan(f"p replaced by 1 - p in {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}",
                       model_edit=_complement(names))

    def measure(self, ev, finding):
        return max((p for _, p in ev.dropouts), default=0.0)

    def draw(self, ax, ev, finding):
        names = [n for n, _ in ev.dropouts][:20]
        figures.bars(ax, names, [p for _, p in ev.dropouts][:20], "dropout p (probability to drop)",
                     guide=0.5, guide_label="the most a standard recipe drops (0.5)")


RULE = DropoutRate()
