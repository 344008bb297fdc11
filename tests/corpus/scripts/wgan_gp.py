# Healthy: WGAN-GP (Gulrajani et al. 2017) on a 2-D mixture: five critic steps per generator step, a gradient
# penalty through autograd.grad(create_graph=True), Adam(1e-4, betas=(0.5, 0.9)).
import math

import torch
from torch import nn

torch.manual_seed(0)


def real_batch(n):
    k = torch.randint(0, 8, (n,))
    ang = k.float() * (2 * math.pi / 8)
    return torch.stack([2 * ang.cos(), 2 * ang.sin()], 1) + 0.05 * torch.randn(n, 2)


G = nn.Sequential(nn.Linear(8, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2))
D = nn.Sequential(nn.Linear(2, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 1))
opt_g = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.5, 0.9))
opt_d = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.9))
for it in range(2000):
    for _ in range(5):
        real = real_batch(256)
        fake = G(torch.randn(256, 8)).detach()
        eps = torch.rand(256, 1)
        mid = (eps * real + (1 - eps) * fake).requires_grad_(True)
        grad, = torch.autograd.grad(D(mid).sum(), mid, create_graph=True)
        gp = ((grad.norm(2, dim=1) - 1) ** 2).mean()
        loss_d = D(fake).mean() - D(real).mean() + 10 * gp
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
    loss_g = -D(G(torch.randn(256, 8))).mean()
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    if it % 100 == 0:
        print(it, loss_d.item(), loss_g.item())
