"""Pathology: a deep ReLU MLP initialised with normal(0, 0.01): each layer shrinks the signal ~10x.

Expected: init-scale (and dead-units: with signals this small, AdamW's first steps push many units below zero).
"""

import torch
from torch import nn

torch.manual_seed(0)

layers = [nn.Linear(20, 128), nn.ReLU()]
for _ in range(4):
    layers += [nn.Linear(128, 128), nn.ReLU()]
model = nn.Sequential(*layers, nn.Linear(128, 5))
for m in model.modules():
    if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, std=0.01)
        nn.init.zeros_(m.bias)
