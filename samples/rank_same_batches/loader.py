"""Broken under torchrun: a shuffled DataLoader without a DistributedSampler. Every rank is seeded alike, so
every rank draws the same batches: N GPUs do the work of one, at N times the cost. The model is healthy_ddp's:

    torchrun --nproc-per-node 2 -m auditor samples/healthy_ddp/model.py --data samples/rank_same_batches/loader.py
"""

import sys
from pathlib import Path

from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from synthetic import blobs  # noqa: E402

train_loader = DataLoader(TensorDataset(*blobs()), batch_size=32, shuffle=True, drop_last=True)
