"""Pathology: the input is multiplied by a buffer meant to be filled from data statistics, left at zero.

Expected: input-independence (and overfit-one-batch, loss-plateau, dead-units: nothing reaches the network).
"""

import torch
from torch import nn

torch.manual_seed(0)


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.zeros(20))  # "set from the training data later": never was
        self.net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))

    def forward(self, x):
        return self.net(x * self.scale)


model = Scaled()
