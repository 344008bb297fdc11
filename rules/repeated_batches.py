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
Full-batch training looks the same and is information only: a script that draws no batch from a DataLoader
over those steps and feeds its model the very same tensor each step (a graph's nodes), or a loader whose pass
is one batch. A script that picks a random subset of its own tensors once, outside its loop, and feeds that
tensor each step is then information too; one that draws the same subset again each step (a seed reset inside
the loop) is not.
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
        seen = f"{sum(same)} of the first {len(same)} consecutive pairs of steps got an identical batch ({pct(share)})"
        if _full_batch(ev):
            yield self.finding(
                "info", "Full-batch training: every step sees the same data",
                f"{seen}, {_whole(ev)}. That is full-batch training (a graph's nodes, a small dataset, L-BFGS), "
                "and fine where those tensors are the whole training set; where they are a sample of a larger one, "
                "the loss measures memorisation of that sample.",
                "Nothing, if they are the whole training set; else draw a new batch each step:\n\n"
                "ix = torch.randint(0, len(X), (batch_size,))   # inside the loop\nloss = loss_fn(model(X[ix]), Y[ix])",
                [], share=share, identical=same, full_batch=True)
            return
        yield self.finding(
            "warning", "Every step trains on the same batch",
            f"{seen}: the loader repeats one batch, so the loss measures memorisation of those samples, not "
            "learning.",
            "Draw a new batch inside the loop, from an iterator made once per epoch:\n\n"
            "for epoch in range(epochs):\n    for x, y in train_loader:      # not x, y = next(iter(train_loader))\n"
            "        ...",
            [], share=share, identical=same)

    def draw(self, ax, ev, finding):
        same = finding.evidence["identical"]
        figures.bars(ax, [f"{i}-{i + 1}" for i in range(len(same))], [1.0 if s else 0.0 for s in same],
                     "same batch as the step before (1 = yes)")
        ax.set_xlabel("consecutive probe steps")


def _full_batch(ev) -> bool:
    """The data is one batch by design: a script that drew no batch from any DataLoader over these steps and fed
    the model the same tensor each step (its own data), or a loader whose whole pass is one batch. A batch taken
    once with next(iter(loader)) is a draw."""
    if ev.loop is not None:
        # The same tensor object every step, too: a batch drawn again each step (a seed reset inside the loop)
        # is a new tensor with the same values.
        pairs = len(ev.batch_fingerprints) - 1
        return ev.loop.get("loader_draws") == 0 and ev.loop.get("same_input_object", 0) >= pairs
    return ev.epoch_steps == 1


def _whole(ev) -> str:
    return ("and no DataLoader handed out a batch: the script trains on its own tensors" if ev.loop is not None else
            "and one batch is the loader's whole pass")


RULE = RepeatedBatches()
