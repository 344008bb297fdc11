"""Pathology: ReLU layers whose biases start at -3, so almost every unit is off for every input.

Expected: dead-units.
"""

import torch
from torch import nn

torch.manual_seed(0)  # the same initial weights in every process

model = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 5))
with torch.no_grad():
    model[0].bias.fill_(-3.0)
    model[2].bias.fill_(-3.0)


def make_optimizer(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9)
