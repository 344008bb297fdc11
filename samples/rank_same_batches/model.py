"""The model of healthy_ddp; the bug is in loader.py: every rank trains on the same batches.

    torchrun --nproc-per-node 2 -m auditor samples/rank_same_batches/model.py --data samples/rank_same_batches/loader.py
"""

import torch
from torch import nn

torch.manual_seed(0)  # the same initial weights in every process (DDP also broadcasts rank 0's)

model = nn.Sequential(
    nn.Linear(20, 128), nn.ReLU(),
    nn.Linear(128, 128), nn.ReLU(),
    nn.Linear(128, 5),
)


def make_optimizer(params):
    return torch.optim.AdamW(params, lr=1e-3)
