"""A small GAN on a 2-D ring of Gaussians, written as GAN tutorials write it: two models, two optimizers,
one loop. Fault: the generator's optimizer is never zeroed (the discriminator's is), so every generator
update carries all its earlier gradients. `--zero-grad` is the healthy loop.

    audit run samples/scripts/gan/train.py               # two reports, one per optimizer
    audit run samples/scripts/gan/train.py --zero-grad   # clean
"""
import argparse
import math

import torch
from torch import nn


def real_batch(n: int) -> torch.Tensor:
    angle = torch.randint(0, 8, (n,)) * (2 * math.pi / 8)
    centres = torch.stack([angle.cos(), angle.sin()], 1) * 2
    return centres + 0.05 * torch.randn(n, 2)


class Generator(nn.Module):
    def __init__(self, z: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(z, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2))

    def forward(self, z):
        return self.net(z)


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 128), nn.LeakyReLU(0.2), nn.Linear(128, 128), nn.LeakyReLU(0.2),
                                 nn.Linear(128, 1))

    def forward(self, x):
        return self.net(x)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zero-grad", action="store_true", help="zero the generator's gradients too (healthy)")
    ap.add_argument("--iters", type=int, default=2000)
    args = ap.parse_args()
    torch.manual_seed(0)
    G, D = Generator(), Discriminator()
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    for it in range(args.iters):
        real = real_batch(128)
        fake = G(torch.randn(128, 16))
        d_loss = bce(D(real), torch.ones(128, 1)) + bce(D(fake.detach()), torch.zeros(128, 1))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()

        g_loss = bce(D(fake), torch.ones(128, 1))
        if args.zero_grad:
            opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        if it % 200 == 0:
            print(f"{it} d {d_loss.item():.3f} g {g_loss.item():.3f}")


if __name__ == "__main__":
    main()
