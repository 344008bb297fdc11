"""Pathology: a conv net fed raw 0-255 pixel values.

Expected: input-scale, with its consequences: dead-units, init-loss (pre-activations ~100x too large),
loss-hockey-stick and loss-plateau.
"""

import torch
from torch import nn

torch.manual_seed(0)

model = nn.Sequential(
    nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def make_optimizer(params):
    return torch.optim.SGD(params, lr=0.01, momentum=0.9)
