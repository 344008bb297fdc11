"""Pathology: a 12-layer sigmoid MLP with PyTorch's default init. sigmoid' <= 0.25 at every layer.

Expected: vanishing-gradients.
"""

import torch
from torch import nn

torch.manual_seed(0)  # the same initial weights in every process

layers = [nn.Linear(20, 64), nn.Sigmoid()]
for _ in range(11):
    layers += [nn.Linear(64, 64), nn.Sigmoid()]
model = nn.Sequential(*layers, nn.Linear(64, 5))


def make_optimizer(params):
    return torch.optim.SGD(params, lr=0.1)
