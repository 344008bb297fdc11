"""Pathology: SGD with lr 0.6 on a regression MLP, far above its stability limit: the loss climbs.

Expected: loss-divergence.
"""

import torch
from torch import nn

model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1))


def make_optimizer(params):
    return torch.optim.SGD(params, lr=0.6)
