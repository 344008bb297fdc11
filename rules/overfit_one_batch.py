import numpy as np

from auditor.engine import Rule, Threshold
from auditor.evidence import fmt, overfit_left, pct
from auditor.report import figures


class OverfitOneBatch(Rule):
    id = "overfit-one-batch"
    reads = ("overfit",)
    from_start = True
    summary = "The model cannot drive the loss of one small fixed batch near zero: a bug, not a tuning problem."
    thresholds = {
        "max_fraction": Threshold(0.4, "warn when the best loss on the batch stays above this fraction of its start",
                                  "measured: healthy samples reach 0.01-1% of the start (Adam 3e-3, 150 steps, "
                                  "8 samples; measured from the loss's own floor, which label smoothing, class "
                                  "weights and soft targets raise above 0); broken "
                                  "ones stay at 59-87%"),
    }
    why = """
Any network with more parameters than a handful of samples can memorise them. If it cannot, whatever its
learning rate, something is broken: the output cannot express the targets (a ReLU or softmax at the end),
the loss compares the wrong things, labels do not match inputs, or gradients do not reach the weights. The
probe trains a copy of the initial model on the first 8 samples of the first batch with Adam (lr 3e-3, 150
steps, stopping early below 1% of the start), where that fails once more at 3e-4 (some transformers need
a cooler rate without warmup), and where both fail at 3e-2 (Adam moves a parameter by about its rate per
step; an ordinal model's thresholds must spread by units): known-good settings, so that a failure points at
the model, loss or labels, not at the optimizer.
"""
    example = """
self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1), nn.ReLU())  # cannot output < 0
"""
    use_instead = """
self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1))             # unbounded output
"""
    references = ("A. Karpathy, 'A Recipe for Training Neural Networks' (2019): 'overfit one batch'",)

    def check(self, ev, t):
        o = ev.overfit
        if not o:
            return
        losses = np.array(o["losses"])
        if not np.isfinite(losses[0]) or losses[0] <= 0:
            return
        best = float(np.nanmin(losses)) if np.isfinite(losses).any() else float("nan")
        fraction, floor = overfit_left(losses, o.get("floor"))
        if fraction <= t.max_fraction:
            return
        yield self.finding(
            "warning", "Cannot overfit a single small batch",
            f"Trained alone on {o['samples']} samples for {o['steps']} Adam steps (lr {o['lr']}"
            + (", the best of lr " + ", ".join(f"{r:g}" for r in o["rates"]) if len(o.get("rates", ())) > 1
               else "") + "), the loss went "
            f"from {fmt(losses[0])} to at best {fmt(best)} ({pct(fraction)} of the way from its start"
            + (f" to the loss's floor of {fmt(floor)}" if floor else " to 0") + " still to go); a working model "
            "memorises them. Look for an output that cannot express the targets, a loss comparing the wrong "
            "tensors, or labels that do not match inputs.",
            "Check the output layer and the loss against the targets, e.g.:\n\n"
            "out = model(x[:8]); print(out[:4], y[:4])   # same shape, same range?\n"
            "# no ReLU/sigmoid/softmax after the last layer unless the loss expects it",
            [], start=float(losses[0]), best=best, fraction=fraction, floor=floor)

    def draw(self, ax, ev, finding):
        losses = ev.overfit["losses"]
        figures.curves(ax, {"loss on 8 fixed samples": (np.arange(len(losses)), losses)}, "Adam step",
                       f"loss ({ev.probe.loss_fn})", logy=True)


RULE = OverfitOneBatch()
