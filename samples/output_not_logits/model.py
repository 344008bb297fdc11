"""Pathology: softmax at the end of the model, then the default cross-entropy, which applies softmax again.

Expected: output-not-logits (and overfit-one-batch: the loss cannot go below log(e + 4) - 1 = 0.90).
"""

import torch
from torch import nn

torch.manual_seed(0)


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))

    def forward(self, x):
        return self.net(x).softmax(dim=-1)


model = Classifier()
