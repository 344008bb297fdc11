"""Pathology: Adam with lr 1e-6: the updates are so small that the loss does not move.

Expected: loss-plateau (and update-ratio: learning rate too low).
"""

import torch
from torch import nn

torch.manual_seed(0)  # the same initial weights in every process

model = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 5))


def make_optimizer(params):
    return torch.optim.Adam(params, lr=1e-6)
