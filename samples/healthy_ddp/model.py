"""Healthy under torchrun: a ReLU classifier trained with AdamW, wrapped by the auditor in DDP (or FSDP2 with
--strategy fsdp); every rank reads its own shard of the data.

    torchrun --nproc-per-node 2 -m auditor samples/healthy_ddp/model.py --data samples/healthy_ddp/loader.py
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
