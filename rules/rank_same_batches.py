import numpy as np

from auditor.engine import Rule, Threshold
from auditor.evidence import pct
from auditor.report import figures


class RankSameBatches(Rule):
    id = "rank-same-batches"
    from_start = True
    reads = ("ranks",)
    unverified_because = ("the fix is in the data pipeline and the training loop, which"
                          " the auditor does not rewrite")
    summary = ("Under torchrun, the ranks train on identical batches (no DistributedSampler): N devices do one's "
               "work; or every epoch repeats the first one's order (set_epoch never called).")
    thresholds = {
        "share": Threshold(0.8, "warn when at least this share of the early steps gives every rank the same batch",
                           "ranks reading disjoint shards never agree on a batch fingerprint (measured: 0 of 10 "
                           "steps on healthy_ddp); ranks without a sampler, seeded alike, agree on 10 of 10"),
    }
    why = """
Data parallelism pays off only when each rank trains on different samples: DDP averages the ranks'
gradients, so N ranks fed the same batch produce the gradient of one batch at N times the cost. A DataLoader
without a DistributedSampler gives every process the whole dataset, and since every rank is seeded alike for
identical initial weights, a shuffled loader shuffles identically on every rank.

A DistributedSampler shuffles by its seed and epoch. A loop that never calls `sampler.set_epoch(epoch)`
trains every epoch on the same batches in the same order: the shuffling the job asked for happens once.
"""
    example = """
train_loader = DataLoader(dataset, batch_size=32, shuffle=True)
"""
    use_instead = """
sampler = DistributedSampler(dataset)             # each rank gets its own 1/N of every epoch
train_loader = DataLoader(dataset, batch_size=32, sampler=sampler)
for epoch in range(epochs):
    sampler.set_epoch(epoch)                       # else every epoch repeats the same order
    for x, y in train_loader:
        ...
"""
    known_problems = """
Identical batches are judged on the first steps of the probe, from a fingerprint of each rank's batch (sum
and position-weighted sum of every tensor), gathered across ranks. set_epoch is judged only where the epoch
loop is in the audited files: a loader.py whose iterable runs its own epochs over a DataLoader. Where the
auditor is handed the DataLoader itself, it starts each new epoch of the probe as a correct loop does
(set_epoch, undone afterwards), since the job's own loop, in a script it never sees, is what calls it; and a
probe shorter than one epoch sees no second epoch at all.
"""
    references = ("PyTorch documentation, torch.utils.data.distributed.DistributedSampler",
                  "PyTorch DDP tutorial: 'Getting Started with Distributed Data Parallel'")

    def check(self, ev, t):
        yield from self._same_across_ranks(ev, t)
        yield from self._same_across_epochs(ev)

    def _same_across_epochs(self, ev):
        for row in ev.samplers:
            epochs = row["epochs"]
            if len(set(epochs)) != 1:
                continue
            data = ev.probe.data_file
            yield self.finding(
                "warning", "Every epoch repeats the same order",
                f"The DistributedSampler behind the loader in {data} started {len(epochs)} epochs during the "
                f"probe, every one at epoch {epochs[0]}: the epoch loop in {data} never calls "
                "sampler.set_epoch(epoch), so each epoch shuffles into the first one's order and the model sees "
                "the same batches in the same sequence every epoch.",
                "Set the sampler's epoch at the start of every epoch, before iterating the loader:\n\n"
                "for epoch in range(epochs):\n    sampler.set_epoch(epoch)\n    for x, y in train_loader:\n"
                "        ...", [], epochs=epochs, first=row["first"])

    def _same_across_ranks(self, ev, t):
        fps = (ev.ranks or {}).get("fingerprints")
        if fps is None or fps.shape[0] < 2 or fps.shape[1] == 0:
            return
        same = [bool(all(np.array_equal(fps[0, s], fps[r, s]) for r in range(1, fps.shape[0])))
                for s in range(fps.shape[1])]
        share = float(np.mean(same))
        if share < t.share:
            return
        world = fps.shape[0]
        yield self.finding(
            "error", f"All {world} ranks train on the same batches",
            f"On {sum(same)} of the first {len(same)} steps ({pct(share)}) every rank got a batch identical to rank "
            f"0's: the loader has no DistributedSampler (or shards by something every rank shares), so the "
            f"{world} processes compute the same gradient and the run does one device's work at {world} times "
            "the cost.",
            "Give each rank its own part of the data with a DistributedSampler, and set its epoch each epoch:\n\n"
            "from torch.utils.data import DistributedSampler\n\n"
            "sampler = DistributedSampler(dataset)\n"
            "train_loader = DataLoader(dataset, batch_size=32, sampler=sampler)   # not shuffle=True\n"
            "for epoch in range(epochs):\n    sampler.set_epoch(epoch)",
            [], share=share, identical=same, world_size=world)

    def draw(self, ax, ev, finding):
        if "epochs" in finding.evidence:
            first, epochs = finding.evidence["first"], finding.evidence["epochs"]
            width = min(len(row) for row in first)
            ax.imshow(np.array([row[:width] for row in first]), aspect="auto", cmap="viridis",
                      interpolation="nearest")
            ax.set_yticks(range(len(epochs)), [f"pass {i} (epoch {e})" for i, e in enumerate(epochs)], fontsize=7)
            ax.set_xlabel(f"position in the pass (first {width} samples); colour: the sample drawn")
            ax.set_title("identical rows: every pass draws the same samples in the same order", fontsize=8)
            return
        same = finding.evidence["identical"]
        figures.bars(ax, [str(i) for i in range(len(same))], [1.0 if s else 0.0 for s in same],
                     "every rank's batch equals rank 0's (1 = yes)")
        ax.set_xlabel("probe step")


RULE = RankSameBatches()
