"""Pathology: a classifier whose forward calls F.dropout(x, p=0.3) without training=self.training: dropout is on
in eval mode too, so every validation pass and prediction is a random draw (Adam 1e-3).

Expected: dropout-ignores-eval (warning), naming the two call sites; training itself is healthy.
"""

import torch
import torch.nn.functional as F
from torch import nn

torch.manual_seed(0)


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(20, 128), nn.Linear(128, 128), nn.Linear(128, 5)

    def forward(self, x):
        x = F.dropout(F.relu(self.fc1(x)), p=0.3)
        x = F.dropout(F.relu(self.fc2(x)), p=0.3)
        return self.out(x)


model = Classifier()


def make_optimizer(params):
    return torch.optim.Adam(params, lr=1e-3)
