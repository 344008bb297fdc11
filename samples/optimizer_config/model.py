"""Pathology: Adam with eps=1.0. Adam's step is lr·m̂/(√v̂ + eps); the gradients' root is ~1e-3 here, so eps
sets every step and Adam is SGD at lr 1e-3 in disguise: updates ~1e-6 of the weights.

Expected: optimizer-config (eps) as the root cause; the learning-rate rules that see its tiny steps are its
consequences, and no learning rate is advised.
"""

import torch
from torch import nn

torch.manual_seed(0)  # the same initial weights in every process

model = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 5))


def make_optimizer(params):
    return torch.optim.Adam(params, lr=1e-3, eps=1.0)
