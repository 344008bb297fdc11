"""Fault (clip-too-tight): clip_grad_norm_ at max_norm=0.01, a value meant for clip_grad_value_, under SGD with
momentum: the gradients' norm is ~0.35, so every step is cut ~35x and the loss barely moves."""
import torch
import torch.nn.functional as F
from torch import nn

torch.manual_seed(0)
w = torch.randn(32, 5)
x = torch.randn(8000, 32)
y = (x @ w).argmax(1)
model = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 5))
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
for epoch in range(5):
    perm = torch.randperm(8000)
    for i in range(0, 8000, 64):
        idx = perm[i:i + 64]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.01)
        opt.step()
    print(epoch, loss.item())
