import numpy as np

from auditor.engine import Rule, Threshold
from auditor.evidence import pct
from auditor.report import figures


class RankSameBatches(Rule):
    id = "rank-same-batches"
    from_start = True
    reads = ("ranks",)
    summary = "Under torchrun, the ranks train on identical batches (no DistributedSampler): N devices do one's work."
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
Judged on the first steps of the probe, from a fingerprint of each rank's batch (sum and position-weighted
sum of every tensor), gathered across ranks. A sampler whose set_epoch is never called still gives each rank
different batches, so this rule does not see it: the probe is shorter than an epoch.
"""
    references = ("PyTorch documentation, torch.utils.data.distributed.DistributedSampler",
                  "PyTorch DDP tutorial: 'Getting Started with Distributed Data Parallel'")

    def check(self, ev, t):
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
        same = finding.evidence["identical"]
        figures.bars(ax, [str(i) for i in range(len(same))], [1.0 if s else 0.0 for s in same],
                     "every rank's batch equals rank 0's (1 = yes)")
        ax.set_xlabel("probe step")


RULE = RankSameBatches()
