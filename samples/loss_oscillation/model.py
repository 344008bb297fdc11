"""Pathology: full-batch gradient descent on a softmax classifier with lr 16, past the stability limit
2/curvature. The loss settles into a two-step cycle (0.77, 0.76, 0.77, ...) well above the 0.52 that
lr 4 reaches: every other step jumps across the valley.

Expected: loss-oscillation (and update-ratio, loss-plateau: the same too-high rate seen from other sides).
"""

import torch
from torch import nn

torch.manual_seed(0)  # the same initial weights in every process

model = nn.Linear(20, 5)


def make_optimizer(params):
    return torch.optim.SGD(params, lr=16.0)
