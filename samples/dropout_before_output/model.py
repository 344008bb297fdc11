"""Pathology: dropout right before the output layer of a regression model.

Expected: dropout-before-output.
"""

import torch
from torch import nn

torch.manual_seed(0)

model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 1))


def make_optimizer(params):
    return torch.optim.Adam(params, lr=1e-3)
