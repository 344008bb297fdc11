"""Broken under torchrun: model.py's own wrap() forgets DistributedDataParallel (it only moves the model), so
no gradient is averaged across ranks and each rank's copy of the weights trains on its own data and drifts
away from the others; rank 0's checkpoint is one of N different models.

    torchrun --nproc-per-node 2 -m auditor samples/rank_drift/model.py --data samples/healthy_ddp/loader.py
"""

import torch
from torch import nn

torch.manual_seed(0)

model = nn.Sequential(
    nn.Linear(20, 128), nn.ReLU(),
    nn.Linear(128, 128), nn.ReLU(),
    nn.Linear(128, 5),
)


def make_optimizer(params):
    return torch.optim.AdamW(params, lr=1e-3)


def wrap(model, mesh):
    return model.to(mesh.device_type)  # should be DistributedDataParallel(model)
