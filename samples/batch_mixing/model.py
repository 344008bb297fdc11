"""Pathology: an LSTM built without batch_first=True, fed (batch, time, features): it reads the batch as time,
so each sample's prediction depends on the samples before it in the batch.

Expected: batch-mixing.
"""

import torch
from torch import nn

torch.manual_seed(0)


class SequenceClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(8, 32)  # batch_first defaults to False
        self.head = nn.Linear(32, 3)

    def forward(self, x):  # x: (batch, time, features)
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


model = SequenceClassifier()


def make_optimizer(params):
    return torch.optim.Adam(params, lr=1e-3)
