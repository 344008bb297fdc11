"""Pathology: a wide MLP trained on 16 samples: it memorises them and the validation loss turns up.

Expected: overfitting.
"""

import torch
from torch import nn

torch.manual_seed(0)

model = nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 5))


def make_optimizer(params):
    return torch.optim.Adam(params, lr=3e-3)
