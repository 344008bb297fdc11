"""Healthy: a ReLU classifier with PyTorch's default init and no make_optimizer (the auditor's AdamW default)."""

import torch
from torch import nn

torch.manual_seed(0)  # the same initial weights in every process

model = nn.Sequential(
    nn.Linear(20, 128), nn.ReLU(),
    nn.Linear(128, 128), nn.ReLU(),
    nn.Linear(128, 5),
)
