"""Pathology: a ReLU classifier ported from TensorFlow 1, whose keep_prob=0.9 became nn.Dropout(0.9): each
hidden layer drops 90% of its units (AdamW 1e-3).

Expected: dropout-rate (warning) as the root cause; p replaced by 1 - p, verified on a copy, learns faster.
"""

import torch
from torch import nn

torch.manual_seed(0)

model = nn.Sequential(
    nn.Linear(20, 128), nn.ReLU(), nn.Dropout(0.9),
    nn.Linear(128, 128), nn.ReLU(), nn.Dropout(0.9),
    nn.Linear(128, 5),
)


def make_optimizer(params):
    return torch.optim.AdamW(params, lr=1e-3)
