"""Pathology: a small text classifier whose weights are all initialised to zero ("start from a clean slate").

Every unit of a layer computes the same thing and gets the same gradient, and the zero embedding passes nothing
of the input on: the model can only learn the label frequencies. Its batches are dicts of token ids, as a
tokenizer returns them, so there is no input the auditor could zero to compare; the zeros are read from the
parameters themselves.

Expected: init-scale (weights initialised to zero), the root of the plateau and of overfit-one-batch.
"""

import torch
import torch.nn.functional as F
from torch import nn

torch.manual_seed(0)


class BagOfTokens(nn.Module):
    def __init__(self, vocab=64, dim=32, classes=4):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.body = nn.Sequential(nn.Linear(dim, 64), nn.GELU(), nn.Linear(64, classes))
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.zeros_(m.weight)

    def forward(self, input_ids, labels):
        return F.cross_entropy(self.body(self.emb(input_ids).mean(1)), labels)


model = BagOfTokens()


def training_step(model, batch):
    return model(**batch)


def make_optimizer(params):
    return torch.optim.AdamW(params, lr=3e-3)
