"""Healthy: a ReLU classifier with PyTorch's default init and no make_optimizer (the auditor's AdamW default)."""

from torch import nn

model = nn.Sequential(
    nn.Linear(20, 128), nn.ReLU(),
    nn.Linear(128, 128), nn.ReLU(),
    nn.Linear(128, 5),
)
