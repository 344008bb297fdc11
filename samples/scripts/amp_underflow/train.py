"""Fault: a small language model trained under fp16 autocast without a GradScaler, its loss divided by the 32
micro-batches it accumulates: each logit's gradient (~1.5e-8 at initialisation) is below half of fp16's smallest
number, so most of them round to exactly zero. The script version of samples/amp_underflow. With --scaler the
same loop goes through a GradScaler (2**16), as it should: nothing is lost then."""
import sys

import torch
import torch.nn.functional as F
from torch import nn

VOCAB, BATCH, LENGTH, ACCUMULATION = 1024, 32, 64, 32

g = torch.Generator().manual_seed(0)
successors = torch.randint(0, VOCAB, (VOCAB, 8), generator=g)
tokens = torch.empty(BATCH * 16, LENGTH + 1, dtype=torch.long)
tokens[:, 0] = torch.randint(0, VOCAB, (len(tokens),), generator=g)
for t in range(LENGTH):
    tokens[:, t + 1] = successors[tokens[:, t], torch.randint(0, 8, (len(tokens),), generator=g)]


class TokenMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 64)
        self.hidden = nn.Linear(64, 64)
        self.out = nn.Linear(64, VOCAB)

    def forward(self, x):
        return self.out(F.relu(self.hidden(self.emb(x)))).reshape(-1, VOCAB)


torch.manual_seed(0)
model = TokenMLP()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
scaler = torch.amp.GradScaler("cpu", enabled="--scaler" in sys.argv[1:])
for _epoch in range(20):
    for i in range(0, len(tokens), BATCH):
        x, y = tokens[i:i + BATCH, :-1], tokens[i:i + BATCH, 1:].reshape(-1)
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            loss = F.cross_entropy(model(x), y) / ACCUMULATION
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
