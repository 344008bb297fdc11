"""Epochs of a DistributedSampler during the replay.

A DistributedSampler shuffles by (seed, epoch): a job that never calls `sampler.set_epoch(epoch)` trains every
epoch in the first one's order. Where the probe itself starts a new epoch of a loader it was handed, it sets
the sampler's epoch as a correct training loop does (and puts it back afterwards), so what it records is the
epoch loop of the user's own code: a loader.py whose iterable runs its own epochs over a DataLoader. Every
pass of a DistributedSampler is recorded with the epoch it ran at, by wrapping the class's `__iter__` for the
duration of the replay.
"""

from __future__ import annotations

from torch.utils.data.distributed import DistributedSampler

SHOWN = 32  # the first indices of each pass kept for the report's figure


def _reachable(loader) -> list:
    """The samplers a training loop would call set_epoch on: the loader's own, or its batch sampler's."""
    found = []
    for owner in (loader, getattr(loader, "batch_sampler", None)):
        sampler = getattr(owner, "sampler", None)
        if sampler is not None and callable(getattr(sampler, "set_epoch", None)) and sampler not in found:
            found.append(sampler)
    return found


class SamplerWatch:
    """Records each DistributedSampler pass as (sampler, epoch); `records()` after the replay."""

    def __init__(self):
        self._passes: list[tuple[object, int, list[int]]] = []
        self._set_by_us: dict[int, tuple[object, object]] = {}  # id -> (sampler, its epoch before the probe)
        self._original = None  # DistributedSampler.__iter__ while the watch is on, else None

    def __enter__(self) -> SamplerWatch:
        original = self._original = DistributedSampler.__iter__
        passes = self._passes

        def __iter__(sampler):
            order = list(original(sampler))  # built whole by the sampler anyway
            passes.append((sampler, getattr(sampler, "epoch", None), [int(i) for i in order[:SHOWN]]))
            return iter(order)

        DistributedSampler.__iter__ = __iter__
        return self

    def __exit__(self, *exc) -> None:
        DistributedSampler.__iter__, self._original = self._original, None
        for sampler, epoch in self._set_by_us.values():  # the user's sampler as it was handed to us
            if epoch is not None:
                sampler.set_epoch(epoch)

    def new_epoch(self, loader, epoch: int) -> None:
        """The probe starts epoch `epoch` (1, 2, ...) of `loader`: set its samplers' epoch as a loop would.
        After the replay (the experiments read on from where it stopped) the samplers are left as handed over."""
        if self._original is None:
            return
        for sampler in _reachable(loader):
            self._set_by_us.setdefault(id(sampler), (sampler, getattr(sampler, "epoch", None)))
            sampler.set_epoch(epoch)

    def records(self) -> list[dict]:
        """Per shuffling DistributedSampler iterated more than once: the epoch of each pass, and the first
        indices it drew."""
        by_sampler: dict[int, dict] = {}
        for sampler, epoch, first in self._passes:
            row = by_sampler.setdefault(id(sampler), {"shuffle": bool(getattr(sampler, "shuffle", False)),
                                                      "epochs": [], "first": []})
            row["epochs"].append(None if epoch is None else int(epoch))
            row["first"].append(first)
        return [row for row in by_sampler.values() if row["shuffle"] and len(row["epochs"]) >= 2]
