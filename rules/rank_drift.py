import numpy as np

from auditor.engine import Rule, Threshold
from auditor.evidence import fmt
from auditor.report import figures


def spreads(ranks: dict) -> tuple[list[str], np.ndarray, int]:
    """Per tensor, (max - min) / mean |norm| across ranks; and how many of the tensors are parameters."""
    norms = np.asarray(ranks["norms"], dtype=float)
    names = list(ranks["param_names"]) + list(ranks["buffer_names"])
    if norms.ndim != 2 or norms.shape[1] != len(names) or norms.shape[0] < 2:
        return [], np.zeros(0), 0
    spread = (norms.max(0) - norms.min(0)) / np.maximum(np.abs(norms).mean(0), 1e-12)
    return names, spread, len(ranks["param_names"])


class RankDrift(Rule):
    id = "rank-drift"
    reads = ("ranks",)
    unverified_because = "the fix is in how the job wraps the model for its ranks, which the auditor does not rewrite"
    summary = "Under torchrun, the ranks' copies of the model drift apart: gradients not averaged, or buffers unsynced."
    thresholds = {
        "params": Threshold(1e-5, "relative spread across ranks of a replicated parameter's norm",
                            "DDP gives every replica the same averaged gradient, so copies stay bit-identical: "
                            "measured spread 0.0 on healthy_ddp and a BatchNorm conv net; a wrap() without DDP "
                            "left 9e-4 to 2e-2 after 100 steps"),
        "grad": Threshold(1e-3, "median relative spread across ranks of the total gradient norm",
                          "0.0 when DDP averages gradients (measured on healthy_ddp); 0.16 without DDP"),
        "buffers": Threshold(0.1, "relative spread across ranks of a buffer's norm (BatchNorm running statistics)",
                             "measured at most 0.013 (DDP) and 0.032 (FSDP2, buffers never broadcast) on a conv net "
                             "with BatchNorm at a per-rank batch of 4; x3 margin"),
    }
    why = """
Data-parallel training keeps one model: every rank holds a replica and DDP averages the gradients so each
replica takes the same step. When the gradients are not averaged (a wrap that forgot DDP, a parameter created
after wrapping, a no_sync() left on) each rank trains its own model on its own data, and the checkpoint rank 0
saves is one of N different models. Buffers are never averaged: BatchNorm running statistics estimated on a
small per-rank batch differ from rank to rank.
"""
    example = """
model = model.to(device)                       # every rank trains alone
"""
    use_instead = """
model = DistributedDataParallel(model.to(device), device_ids=[local_rank])
model = nn.SyncBatchNorm.convert_sync_batchnorm(model)   # BatchNorm statistics over all ranks' samples
"""
    known_problems = """
Compares the norm of each parameter and buffer on every rank at the end of the probe, and each step's total
gradient norm (replicated strategies only: under FSDP2 each rank holds a different shard, so only buffers are
compared). Two tensors with equal norms but different values would pass; drift from missing gradient
averaging never keeps norms equal.
"""
    references = ("PyTorch documentation, torch.nn.parallel.DistributedDataParallel and nn.SyncBatchNorm",
                  "Goyal et al. 2017, 'Accurate, Large Minibatch SGD' (per-worker BatchNorm statistics)")

    def check(self, ev, t):
        ranks = ev.ranks
        if not ranks:
            return
        names, spread, n_params = spreads(ranks)
        drifting = [(n, s) for n, s in zip(names[:n_params], spread[:n_params], strict=True) if s > t.params]
        grad = ranks.get("grad_norm")
        grad_spread = None
        if grad is not None and np.asarray(grad).shape[0] > 1:
            g = np.asarray(grad, dtype=float)
            with np.errstate(invalid="ignore", divide="ignore"):
                grad_spread = float(np.nanmedian((g.max(0) - g.min(0)) / np.abs(g).mean(0)))
        world = ranks["world"]
        if drifting or (grad_spread is not None and grad_spread > t.grad):
            worst = max(drifting, key=lambda x: x[1]) if drifting else None
            detail = (f"{len(drifting)} of {n_params} parameter tensors differ across the {world} ranks after the "
                      f"probe (largest relative spread of a norm: {fmt(worst[1])} at {worst[0]}; replicas kept in "
                      f"step by DDP agree to the last bit)" if worst else "")
            gtext = (f"each step's gradient norm differs across ranks by {fmt(grad_spread)} (median relative spread)"
                     if grad_spread is not None and grad_spread > t.grad else "")
            how = "the script's model is not wrapped in DDP or FSDP" if ranks["strategy"] == "none" else \
                f"strategy: {ranks['strategy']}"
            # A script wraps its own model; model.py hands its wrapping to the auditor through wrap().
            code = "model = DDP(model.to(device))\noptimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n" \
                if ev.loop is not None else "def wrap(model, mesh):\n    return DDP(model)\n"
            yield self.finding(
                "error", "The ranks' copies of the model drift apart",
                f"{'; '.join(x for x in (detail, gtext) if x)}: the gradients are not averaged across ranks, so "
                f"each rank trains its own model on its own data ({how}).",
                "Wrap the model in DistributedDataParallel (or FSDP2's fully_shard) after moving it to the device, "
                "and build the optimizer on the wrapped model's parameters:\n\n"
                "from torch.nn.parallel import DistributedDataParallel as DDP\n\n" + code,
                [n for n, _ in sorted(drifting, key=lambda x: -x[1])], grad_spread=grad_spread,
                spreads={n: float(s) for n, s in drifting}, world_size=world)
        buffers = [(n, s) for n, s in zip(names[n_params:], spread[n_params:], strict=True) if s > t.buffers]
        if buffers:
            worst = max(buffers, key=lambda x: x[1])
            yield self.finding(
                "warning", "Buffers differ across ranks (BatchNorm statistics without SyncBatchNorm)",
                f"{len(buffers)} buffer(s) differ across the {world} ranks by more than {fmt(t.buffers)} of their "
                f"norm (largest: {fmt(worst[1])} at {worst[0]}): each rank estimates its own running statistics "
                "from its own small batch, and rank 0's checkpoint keeps only its own.",
                "Compute BatchNorm statistics over the batch of all ranks:\n\n"
                "model = nn.SyncBatchNorm.convert_sync_batchnorm(model)   # before wrapping in DDP",
                [n for n, _ in buffers], spreads={n: float(s) for n, s in buffers}, world_size=world)

    def draw(self, ax, ev, finding):
        spreads_ = finding.evidence["spreads"]
        if spreads_:
            figures.bars(ax, list(spreads_), list(spreads_.values()), "relative spread of the norm across ranks")
        else:
            figures.loss_curve(ax, ev)


RULE = RankDrift()
