"""Pathology: the dataset is sorted by class and the loader does not shuffle: every batch is one class.

Expected: label-problems (and loss-plateau: each batch pulls towards its own class).
"""

import torch
from torch import nn

torch.manual_seed(0)

model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))
