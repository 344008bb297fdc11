"""A 34M-parameter MLP trained with AdamW: the model of bench/bench_memory.py (issue 13's measurement)."""

import torch
from torch import nn

model = nn.Sequential(nn.Linear(1024, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 3072),
                      nn.ReLU(), nn.Linear(3072, 10))


def make_optimizer(params):
    return torch.optim.AdamW(params, lr=3e-4)
