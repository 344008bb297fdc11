"""Pathology: SGD with lr 0.9 on linear regression, above its 2/L stability limit: the loss climbs step after step.

Expected: loss-divergence.
"""

import torch
from torch import nn

torch.manual_seed(0)  # the same initial weights in every process

model = nn.Linear(16, 1)


def make_optimizer(params):
    return torch.optim.SGD(params, lr=0.9)
