"""Pathology: tanh layers initialised with raw randn (std 1) instead of gain/sqrt(fan_in).

The output layer is small, so the loss at init is fine: the only problem is saturation.
Expected: saturated-units.
"""

import torch
from torch import nn

torch.manual_seed(0)  # the same initial weights in every process

model = nn.Sequential(nn.Linear(20, 128), nn.Tanh(), nn.Linear(128, 128), nn.Tanh(), nn.Linear(128, 5))
with torch.no_grad():
    for layer in (model[0], model[2]):
        layer.weight.normal_(0.0, 1.0)
    model[4].weight.mul_(0.01)


def make_optimizer(params):
    return torch.optim.SGD(params, lr=0.1)
