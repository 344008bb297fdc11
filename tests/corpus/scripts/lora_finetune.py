# Healthy: LoRA (Hu et al. 2021) written by hand: a backbone trained on task A, then frozen, and rank-4 adapters
# (A Kaiming-uniform, B at zero, so each adapter starts as the identity) fine-tuned on task B with AdamW.
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, r=4, alpha=8):
        super().__init__()
        self.base = base
        self.A = nn.Parameter(torch.empty(r, base.in_features))
        self.B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.scale = alpha / r

    def forward(self, x):
        return self.base(x) + (x @ self.A.t() @ self.B.t()) * self.scale


def task(seed, n=4096):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(32, 6, generator=g)
    x = torch.randn(n, 32, generator=g)
    return x, (x @ w + 0.3 * torch.randn(n, 6, generator=g)).argmax(1)


net = nn.Sequential(nn.Linear(32, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(), nn.Linear(128, 6))
xa, ya = task(1)
pre = torch.optim.AdamW(net.parameters(), lr=1e-3)
for _ in range(300):  # "pretraining" on task A, no grad hooks needed: a plain loop
    i = torch.randint(0, 4096, (128,))
    pre.zero_grad(set_to_none=True)
    F.cross_entropy(net(xa[i]), ya[i]).backward()
    pre.step()

for p in net.parameters():
    p.requires_grad_(False)
for idx in (0, 2, 4):
    net[idx] = LoRALinear(net[idx])
params = [p for p in net.parameters() if p.requires_grad]
print("trainable", sum(p.numel() for p in params))
opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.0)
xb, yb = task(2)
loader = DataLoader(TensorDataset(xb, yb), batch_size=64, shuffle=True)
for epoch in range(5):
    for x, y in loader:
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    print(epoch, loss.item())
