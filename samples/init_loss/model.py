"""Pathology: the output layer starts 20x too large, so the logits are confidently wrong at init.

Expected: init-loss (the loss starts far above -ln(1/5) = 1.61).
"""

import torch
from torch import nn

torch.manual_seed(0)  # the same initial weights in every process

model = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 5))
with torch.no_grad():
    model[4].weight.mul_(20.0)
    model[4].bias.uniform_(-5, 5)
