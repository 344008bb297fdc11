"""A DataLoader over a DistributedSampler: each rank gets its own part of every epoch."""

import sys
from pathlib import Path

import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from synthetic import blobs  # noqa: E402

dataset = TensorDataset(*blobs())
sampler = DistributedSampler(dataset, seed=0) if dist.is_initialized() else None
train_loader = DataLoader(dataset, batch_size=32, sampler=sampler, shuffle=sampler is None, drop_last=True)
