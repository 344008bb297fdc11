# Multi-task: a shared trunk, a 5-way classification head and a standardised regression head, losses summed.
import torch
from torch import nn
import torch.nn.functional as F

torch.manual_seed(0)
x = torch.randn(6000, 16)
cls = (x[:, :3].sum(1) > 0).long() + 2 * (x[:, 3] > 0.5).long()
reg = x[:, 4:8].sum(1, keepdim=True) * 0.5 + 0.1 * torch.randn(6000, 1)
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(16, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU())
        self.cls = nn.Linear(128, 5)
        self.reg = nn.Linear(128, 1)
    def forward(self, x):
        h = self.trunk(x)
        return self.cls(h), self.reg(h)
net = Net()
opt = torch.optim.AdamW(net.parameters(), lr=2e-3)
for epoch in range(8):
    perm = torch.randperm(6000)
    for i in range(0, 6000, 100):
        b = perm[i:i + 100]
        logits, pred = net(x[b])
        loss = F.cross_entropy(logits, cls[b]) + F.mse_loss(pred, reg[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(epoch, loss.item())
