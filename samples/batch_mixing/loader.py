import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from synthetic import Batches  # noqa: E402

g = torch.Generator().manual_seed(0)
X = torch.randn(2048, 12, 8, generator=g)  # (batch, time, features)
Y = (X[:, :, 0].sum(1) > 0).long() + (X[:, :, 1].sum(1) > 2).long()
train_loader = Batches(X, Y, batch_size=32)
