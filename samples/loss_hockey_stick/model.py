"""Pathology: the output bias starts at +8 for one class, so every prediction is confidently that class.
SGD removes the offset within a few steps: the loss plunges, then crawls.

Expected: loss-hockey-stick (and init-loss).
"""

import torch
from torch import nn

torch.manual_seed(0)  # the same initial weights in every process

model = nn.Sequential(nn.Linear(20, 128), nn.Tanh(), nn.Linear(128, 5))
with torch.no_grad():
    model[2].bias.zero_()
    model[2].bias[0] = 8.0


def make_optimizer(params):
    return torch.optim.SGD(params, lr=0.5)
