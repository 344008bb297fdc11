# Metric learning: a small CNN embedding, TripletMarginLoss with in-batch hard-ish triplets, SGD momentum.
import torch
from torch import nn
import torch.nn.functional as F

torch.manual_seed(0)
C = 8
proto = torch.randn(C, 1, 28, 28)
def batch(n=64):
    y = torch.randint(0, C, (n,))
    return proto[y] + 0.8 * torch.randn(n, 1, 28, 28), y
net = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                    nn.Flatten(), nn.Linear(64, 32))
opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
crit = nn.TripletMarginLoss(margin=0.5)
for step in range(1500):
    x, y = batch()
    e = F.normalize(net(x), dim=1)
    with torch.no_grad():
        d = torch.cdist(e, e)
        same = y[:, None] == y[None, :]
        pos = torch.where(same & ~torch.eye(len(y), dtype=torch.bool), d, torch.full_like(d, -1)).argmax(1)
        neg = torch.where(~same, d, torch.full_like(d, 1e9)).argmin(1)
    loss = crit(e, e[pos], e[neg])
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 100 == 0:
        print(step, loss.item())
