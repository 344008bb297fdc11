import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from synthetic import Batches, regression  # noqa: E402

X, Y = regression()
g = torch.Generator().manual_seed(1)
corrupt = torch.randperm(len(Y), generator=g)[:4]  # a handful of mislabelled rows, e.g. a unit mix-up
Y[corrupt] *= 300
train_loader = Batches(X, Y, batch_size=64)
