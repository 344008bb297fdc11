# Two models in one loop: a small GAN on 2-D points, each with its own Adam.
# --rebuild-g: the generator is built again after its optimizer (a bug: opt_g steps the first one's tensors).
import sys

import torch
from torch import nn


def make_g():
    return nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 2))


torch.manual_seed(0)
G = make_g()
D = nn.Sequential(nn.Linear(2, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1))
opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
if "--rebuild-g" in sys.argv:
    G = make_g()
bce = nn.BCEWithLogitsLoss()
for it in range(2000):
    real = torch.randn(64, 2) * 0.2 + torch.tensor([1.0, -1.0])
    fake = G(torch.randn(64, 8))
    opt_d.zero_grad()
    d_loss = bce(D(real), torch.ones(64, 1)) + bce(D(fake.detach()), torch.zeros(64, 1))
    d_loss.backward()
    opt_d.step()
    opt_g.zero_grad()
    g_loss = bce(D(fake), torch.ones(64, 1))
    g_loss.backward()
    opt_g.step()
