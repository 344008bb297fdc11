"""Broken: the job's epoch loop lives beside the data and never calls sampler.set_epoch(epoch). A
DistributedSampler shuffles by (seed, epoch), so every epoch replays the first one's batches in the first one's
order. The model is healthy_ddp's; 1024 samples make an epoch short enough (16 batches a rank on 2 ranks) for
the probe to see seven of them:

    torchrun --nproc-per-node 2 -m auditor samples/healthy_ddp/model.py --data samples/set_epoch_forgotten/loader.py
"""

import sys
from pathlib import Path

import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from synthetic import blobs  # noqa: E402

dataset = TensorDataset(*blobs(n=1024))
# Explicit replicas and rank, so that one process (world of 1) reads it too.
world, rank = (dist.get_world_size(), dist.get_rank()) if dist.is_initialized() else (1, 0)
sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, seed=0)
loader = DataLoader(dataset, batch_size=32, sampler=sampler, drop_last=True)


class Epochs:
    """Batches epoch after epoch, as the training script's loop hands them out."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def __iter__(self):
        for _epoch in range(self.epochs):
            # missing: sampler.set_epoch(_epoch)
            yield from loader


train_loader = Epochs(50)
