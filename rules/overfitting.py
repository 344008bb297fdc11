import numpy as np

from auditor.engine import Rule, Threshold
from auditor.evidence import fmt
from auditor.report import figures


class Overfitting(Rule):
    id = "overfitting"
    reads = ("val_loss",)
    summary = "With a val_loader: validation loss rising while the training loss falls."
    thresholds = {
        "rise": Threshold(0.1, "warn when the last validation loss is this fraction above its minimum",
                          "well above the noise of a 4-batch validation estimate"),
    }
    why = """
When the training loss keeps falling but the validation loss turns up, the model is memorising the training
set instead of learning what generalises. If this shows within a short probe, the model is far too large for
the data, or the training set is tiny or duplicated.
"""
    example = """
train_loader = [(x[:32], y[:32])] * 100     # 32 samples, a network with 100k parameters
"""
    use_instead = """
# more (or augmented) data, weight decay, dropout, a smaller model, or early stopping:
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
"""
    references = ("I. Goodfellow, Y. Bengio, A. Courville, 'Deep Learning', 2016, section 7.8 (early stopping)",)

    def check(self, ev, t):
        if len(ev.val_loss) < 3:
            return
        steps = np.array([s for s, _ in ev.val_loss])
        val = np.array([v for _, v in ev.val_loss])
        if not np.isfinite(val).all():
            return
        i_min = int(np.argmin(val))
        if i_min == len(val) - 1 or val[-1] < (1 + t.rise) * val[i_min]:
            return
        train = ev.loss
        at_min, end = float(np.nanmedian(train[max(0, steps[i_min] - 3): steps[i_min] + 4])), float(
            np.nanmedian(train[-7:]))
        if not end < at_min:
            return
        yield self.finding(
            "warning", "Validation loss rises while training loss falls",
            f"The validation loss was lowest ({fmt(val[i_min])}) at step {steps[i_min]} and is {fmt(val[-1])} at "
            f"step {steps[-1]}, while the training loss fell from {fmt(at_min)} to {fmt(end)}.",
            "Regularise or get more data, and keep the checkpoint with the best validation loss:\n\n"
            "optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)",
            [], val_steps=steps.tolist(), val=val.tolist())

    def draw(self, ax, ev, finding):
        figures.curves(ax, {"training loss": (np.arange(ev.loss.size), ev.loss),
                            "validation loss": (finding.evidence["val_steps"], finding.evidence["val"])},
                       "probe step", f"loss ({ev.probe.loss_fn})")


RULE = Overfitting()
