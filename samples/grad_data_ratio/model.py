"""Pathology: the middle layer's weights start 100x too large. BatchNorm after it hides this in the forward
pass, but its gradient shrinks 100x while its weights are 100x larger: with SGD it learns ~10^4x slower.

Expected: grad-data-ratio.
"""

import torch
from torch import nn

torch.manual_seed(0)  # the same initial weights in every process

model = nn.Sequential(
    nn.Linear(20, 128), nn.BatchNorm1d(128), nn.ReLU(),
    nn.Linear(128, 128), nn.BatchNorm1d(128), nn.ReLU(),
    nn.Linear(128, 5),
)
with torch.no_grad():
    model[3].weight.mul_(100.0)


def make_optimizer(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9)
