# Healthy: a denoising diffusion model (Ho et al. 2020) on 2-D points: predict the noise at a random timestep,
# MSE against N(0, 1) noise, Adam 1e-3, an EMA copy of the weights updated after every step.
import copy

import torch
import torch.nn.functional as F
from torch import nn

torch.manual_seed(0)
T = 200
betas = torch.linspace(1e-4, 0.02, T)
abar = torch.cumprod(1 - betas, 0)
data = torch.cat([torch.randn(5000, 2) * 0.1 + torch.tensor([1.0, 1.0]), torch.randn(5000, 2) * 0.1 - 1.0])


class Eps(nn.Module):
    def __init__(self):
        super().__init__()
        self.t = nn.Embedding(T, 64)
        self.net = nn.Sequential(nn.Linear(2 + 64, 256), nn.SiLU(), nn.Linear(256, 256), nn.SiLU(), nn.Linear(256, 2))

    def forward(self, x, t):
        return self.net(torch.cat([x, self.t(t)], 1))


model = Eps()
ema = copy.deepcopy(model).requires_grad_(False)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
for step in range(3000):
    x0 = data[torch.randint(0, len(data), (256,))]
    t = torch.randint(0, T, (256,))
    noise = torch.randn_like(x0)
    xt = abar[t].sqrt()[:, None] * x0 + (1 - abar[t]).sqrt()[:, None] * noise
    loss = F.mse_loss(model(xt, t), noise)
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), model.parameters(), strict=True):
            pe.lerp_(p, 1 - 0.999)
    if step % 500 == 0:
        print(step, loss.item())
