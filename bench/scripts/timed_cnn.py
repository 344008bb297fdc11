"""The bench's second script: a small CNN with BatchNorm and dropout, AdamW; writes its loop time as timed_mlp."""
import os
import sys
import time

import torch
from torch import nn

steps = int(sys.argv[1])
torch.manual_seed(0)
X = torch.randn(1024, 3, 32, 32)
Y = torch.randint(0, 10, (1024,))
model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Dropout(0.1), nn.Linear(64, 10))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
started = time.perf_counter()
try:
    for _ in range(steps):
        ix = torch.randint(0, 1024, (64,))
        opt.zero_grad()
        nn.functional.cross_entropy(model(X[ix]), Y[ix]).backward()
        opt.step()
finally:
    with open(os.environ["BENCH_TIME_FILE"], "a") as f:  # one line a run: `audit run` re-runs the script
        f.write(f"{time.perf_counter() - started}\n")
