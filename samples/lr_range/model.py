"""Pathology: Adam at lr 0.3, far above the range where an LR range test sees the loss fall.

Expected: lr-range.
"""

import torch
from torch import nn

torch.manual_seed(0)

model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))


def make_optimizer(params):
    return torch.optim.Adam(params, lr=0.3)
