"""Pathology: the optimizer is built from the last layer's parameters only; the body never moves.

Expected: weights-not-updating (and loss-plateau: with the body frozen the loss barely moves).
"""

import torch
from torch import nn

torch.manual_seed(0)

model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 5))


def make_optimizer(params):
    params = list(params)
    return torch.optim.AdamW(params[-2:], lr=1e-3)  # meant to fine-tune the head, but the body was never trained
