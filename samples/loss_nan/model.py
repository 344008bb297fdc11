"""Pathology: the data has missing values (NaN) in one feature, so the loss is NaN before any update.

Expected: loss-nan.
"""

import torch
from torch import nn

torch.manual_seed(0)  # the same initial weights in every process

model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))
