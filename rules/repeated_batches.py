import numpy as np

from auditor.engine import Rule, Threshold
from auditor.evidence import pct
from auditor.report import figures


class RepeatedBatches(Rule):
    id = "repeated-batches"
    unverified_because = "the fix is in the data pipeline, which the auditor does not rewrite"
    from_start = True
    summary = "The loader hands out the same batch step after step (an iterator made once, next() outside the loop)."
    thresholds = {
        "share": Threshold(0.8, "warn when at least this share of consecutive early steps get an identical batch",
                           "a shuffled loader repeats a whole batch with probability ~0; a one-batch loader always"),
    }
    why = """
A training loop that calls `next(iter(loader))` once, outside the loop, or a dataset of a single batch,
trains on the same samples every step. The loss falls to zero, which looks like fast learning, while the
model memorises those samples and learns nothing else; every number the run reports is about one batch.
"""
    example = """
x, y = next(iter(train_loader))          # taken once
for step in range(10_000):
    loss = F.cross_entropy(model(x), y)
"""
    use_instead = """
for step, (x, y) in enumerate(train_loader):   # a fresh batch every step
    loss = F.cross_entropy(model(x), y)
"""
    known_problems = """
Judged on the first steps of the probe, by a fingerprint of each batch's values (sum and position-weighted
sum of each tensor): two different batches with equal fingerprints are astronomically unlikely, so the rule
does not fire by chance; a loader that repeats after a few distinct batches is not flagged.
"""
    references = ("A. Karpathy, 'A Recipe for Training Neural Networks' (2019): overfit one batch only on purpose",)

    def check(self, ev, t):
        fps = ev.batch_fingerprints
        if len(fps) < 3:
            return
        same = [bool(a.shape == b.shape and np.array_equal(a, b)) for a, b in zip(fps, fps[1:], strict=False)]
        share = float(np.mean(same))
        if share < t.share:
            return
        yield self.finding(
            "warning", "Every step trains on the same batch",
            f"{sum(same)} of the first {len(same)} consecutive pairs of steps got an identical batch ({pct(share)}): "
            "the loader repeats one batch, so the loss measures memorisation of those samples, not learning. "
            "(Full-batch training on purpose looks the same: then ignore this rule.)",
            "Draw a new batch inside the loop, from an iterator made once per epoch:\n\n"
            "for epoch in range(epochs):\n    for x, y in train_loader:      # not x, y = next(iter(train_loader))\n"
            "        ...",
            [], share=share, identical=same)

    def draw(self, ax, ev, finding):
        same = finding.evidence["identical"]
        figures.bars(ax, [f"{i}-{i + 1}" for i in range(len(same))], [1.0 if s else 0.0 for s in same],
                     "same batch as the step before (1 = yes)")
        ax.set_xlabel("consecutive probe steps")


RULE = RepeatedBatches()
