"""label-problems (labels unrelated to their inputs): a healthy ReLU classifier (the healthy_mlp_adamw recipe,
AdamW 1e-3) trained on labels that were shuffled separately from their inputs.

Expected findings: label-problems (error: the labels do not depend on the inputs) as the root cause; no
learning-rate advice (lr-range stays silent: no rate beats predicting the label frequencies).
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
