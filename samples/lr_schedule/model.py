"""Fault: make_scheduler returns an epoch schedule (StepLR, 10 epochs per decay) that the job steps per batch."""

import torch
from torch import nn

torch.manual_seed(0)

model = nn.Sequential(
    nn.Linear(20, 128), nn.ReLU(),
    nn.Linear(128, 128), nn.ReLU(),
    nn.Linear(128, 5),
)


def make_optimizer(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9)


def make_scheduler(optimizer):
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.1)
