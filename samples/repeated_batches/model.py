"""repeated-batches: a healthy ReLU classifier (AdamW 1e-3) whose loader repeats one batch: the batch was
taken once with next(iter(...)) and then served every step.

Expected findings: repeated-batches (error) as the root cause; the loss falls to near zero, which a report
that did not look at the data would call fast learning.
"""

import torch
from torch import nn

torch.manual_seed(0)

model = nn.Sequential(
    nn.Linear(20, 128), nn.ReLU(),
    nn.Linear(128, 128), nn.ReLU(),
    nn.Linear(128, 5),
)


def make_optimizer(params):
    return torch.optim.AdamW(params, lr=1e-3)
