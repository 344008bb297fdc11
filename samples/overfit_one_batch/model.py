"""Pathology: a ReLU after the output layer of a regression model: it can never predict a negative target.

Expected: overfit-one-batch (and dead-units, loss-plateau, lr-range: the clamped output stalls training).
"""

import torch
from torch import nn

torch.manual_seed(0)

model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1), nn.ReLU())


def make_optimizer(params):
    return torch.optim.Adam(params, lr=1e-3)
