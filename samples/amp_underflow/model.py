"""Pathology: a small language model trained in fp16 without a GradScaler.

The loss is averaged over 2048 tokens and divided by 32 accumulation steps, so the gradient of each of the 1024
logits per token is ~1.5e-8 at initialisation: below half of fp16's smallest number (6e-8), so most of them round to
exactly zero. Expected: amp-underflow at `out`, fixed by a GradScaler (init_scale 2**16).
"""

import torch
import torch.nn.functional as F
from torch import nn

torch.manual_seed(0)

VOCAB = 1024
ACCUMULATION = 32  # micro-batches per optimizer step in the real job

amp = "fp16"


def make_grad_scaler():
    return None  # the training script calls loss.backward() directly


class TokenMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 64)
        self.hidden = nn.Linear(64, 64)
        self.out = nn.Linear(64, VOCAB)

    def forward(self, x):
        return self.out(F.relu(self.hidden(self.emb(x))))


model = TokenMLP()


def loss_fn(logits, y):
    return F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1)) / ACCUMULATION


def make_optimizer(params):
    return torch.optim.AdamW(params, lr=1e-3)
