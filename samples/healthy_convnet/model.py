"""Healthy: a small conv net with BatchNorm and ReLU, PyTorch's default init, SGD with momentum."""

import torch
from torch import nn

torch.manual_seed(0)  # the same initial weights in every process


def block(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


model = nn.Sequential(
    block(3, 16), nn.MaxPool2d(2),
    block(16, 32), nn.MaxPool2d(2),
    block(32, 64), nn.AdaptiveAvgPool2d(1),
    nn.Flatten(), nn.Linear(64, 10),
)


def make_optimizer(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)
