"""Pathology: a 10-layer ReLU MLP initialised with gain 2.5 instead of sqrt(2): each layer amplifies
the backward signal ~1.8x. A LayerNorm before the head keeps the forward output sane.

Expected: exploding-gradients.
"""

import torch
from torch import nn

torch.manual_seed(0)  # the same initial weights in every process

layers = []
for i in range(10):
    lin = nn.Linear(20 if i == 0 else 64, 64)
    with torch.no_grad():
        lin.weight.normal_(0.0, 2.5 / lin.in_features**0.5)
        lin.bias.zero_()
    layers += [lin, nn.ReLU()]
model = nn.Sequential(*layers, nn.LayerNorm(64), nn.Linear(64, 5))


def make_optimizer(params):
    return torch.optim.SGD(params, lr=1e-3)
