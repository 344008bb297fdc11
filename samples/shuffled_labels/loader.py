import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from synthetic import Batches, blobs  # noqa: E402

X, Y = blobs()
# The bug: the labels get a permutation of their own, so no label belongs to its input any more.
Y = Y[torch.randperm(len(Y), generator=torch.Generator().manual_seed(1))]
train_loader = Batches(X, Y, batch_size=32)
