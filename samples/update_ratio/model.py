"""Pathology: SGD with lr 1e-4 on a ReLU MLP: each step changes the weights by ~1e-5 of their scale.

Expected: update-ratio (learning rate too low).
"""

import torch
from torch import nn

torch.manual_seed(0)  # the same initial weights in every process

model = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 5))


def make_optimizer(params):
    return torch.optim.SGD(params, lr=1e-4)
