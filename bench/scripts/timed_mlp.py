"""The bench's training script: a makemore-style character MLP (embedding, tanh hidden layer, BatchNorm),
trained on random contexts, which writes how long its loop ran (however it ended) to $BENCH_TIME_FILE."""
import os
import sys
import time

import torch
from torch import nn

steps = int(sys.argv[1])
width = int(sys.argv[2]) if len(sys.argv) > 2 else 200
torch.manual_seed(0)
X = torch.randint(0, 27, (20000, 3))
Y = torch.randint(0, 27, (20000,))
model = nn.Sequential(nn.Embedding(27, 10), nn.Flatten(), nn.Linear(30, width, bias=False), nn.BatchNorm1d(width),
                      nn.Tanh(), nn.Linear(width, 27))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
started = time.perf_counter()
try:
    for _ in range(steps):
        ix = torch.randint(0, X.shape[0], (32,))
        loss = nn.functional.cross_entropy(model(X[ix]), Y[ix])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
finally:
    with open(os.environ["BENCH_TIME_FILE"], "a") as f:  # one line a run: `audit run` re-runs the script
        f.write(f"{time.perf_counter() - started}\n")
