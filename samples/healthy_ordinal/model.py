"""Healthy: ordinal regression (CORAL, Cao et al. 2020): K-1 binary tasks "rating > k" sharing one score,
whose thresholds start equal and must spread by units; BCE with logits on cumulative targets; ratings 1..5."""
import torch
import torch.nn.functional as F
from torch import nn

K = 5


class Coral(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 1, bias=False))
        self.thresholds = nn.Parameter(torch.zeros(K - 1))

    def forward(self, x):
        return self.body(x) + self.thresholds


model = Coral()


def loss_fn(logits, rating):
    levels = (rating.unsqueeze(1) > torch.arange(1, K, device=rating.device)).float()
    return F.binary_cross_entropy_with_logits(logits, levels)


def make_optimizer(params):
    return torch.optim.Adam(params, lr=5e-3)
