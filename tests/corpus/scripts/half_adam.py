# Fault: model.half() for speed, then Adam with its default eps=1e-8, which is 0 in float16: a parameter whose
# gradient is zero for a step divides zero by zero.
import torch
import torch.nn.functional as F
from torch import nn

torch.manual_seed(0)
w = torch.randn(32, 5)
x = torch.randn(8000, 32)
y = (x @ w).argmax(1)
model = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 5)).half()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(5):
    perm = torch.randperm(8000)
    for i in range(0, 8000, 64):
        idx = perm[i:i + 64]
        loss = F.cross_entropy(model(x[idx].half()).float(), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(epoch, loss.item())
