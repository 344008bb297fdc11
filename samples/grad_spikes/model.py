"""Pathology: regression data with rare corrupt targets (x300): the batches holding one give gradient spikes.

Expected: grad-spikes (and loss-divergence, loss-oscillation, lr-range: momentum carries each spike on).
"""

import torch
from torch import nn

torch.manual_seed(0)

model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1))


def make_optimizer(params):
    return torch.optim.SGD(params, lr=0.01, momentum=0.9)
