"""Healthy: a regression MLP (MSE chosen by default for float targets), default init, Adam lr 1e-3."""

import torch
from torch import nn

torch.manual_seed(0)  # the same initial weights in every process

model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))


def make_optimizer(params):
    return torch.optim.Adam(params, lr=1e-3)
