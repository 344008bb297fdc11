"""Pathology: a regression MLP whose output is (B, 1) and whose targets are (B,): F.mse_loss broadcasts the two to
(B, B) and compares every prediction with every target in the batch. Torch warns once, on stderr.

Expected: loss-broadcast (error) as the root cause; the model cannot overfit one batch because of it.
"""

import torch
import torch.nn.functional as F
from torch import nn

torch.manual_seed(0)  # the same initial weights in every process

model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))


def loss_fn(pred, target):
    return F.mse_loss(pred, target)


def make_optimizer(params):
    return torch.optim.Adam(params, lr=1e-3)
