"""Pathology: nn.CrossEntropyLoss(reduction="sum") over batches of 64, under SGD at 0.05 with momentum, a rate
tuned for the mean: every step is 64x too large, and the first one rewrites the weights.

Expected: loss-reduction-sum (warning) as the root cause; the rate divided by the 64 terms summed (the step the
mean takes), verified on a copy.
"""

import torch
from torch import nn

torch.manual_seed(0)

model = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 5))
loss_fn = nn.CrossEntropyLoss(reduction="sum")


def make_optimizer(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9)
