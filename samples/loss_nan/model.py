"""Pathology: the data has missing values (NaN) in one feature, so the loss is NaN before any update.

Expected: loss-nan.
"""

from torch import nn

model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))
