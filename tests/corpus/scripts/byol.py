# Healthy: BYOL (Grill et al. 2020): an online network with a predictor, a target network updated as an EMA of the
# online one (no optimizer), forwarded under no_grad in train mode; loss 2 - 2 cos, LARS-free (Adam).
import copy

import torch
import torch.nn.functional as F
from torch import nn

torch.manual_seed(0)
proto = torch.randn(10, 3, 16, 16)
labels = torch.randint(0, 10, (4096,))
images = proto[labels] + 0.5 * torch.randn(4096, 3, 16, 16)


def augment(x):
    x = x + 0.3 * torch.randn_like(x)
    flip = torch.rand(x.shape[0]) < 0.5
    x[flip] = x[flip].flip(-1)
    return x


def mlp(i, h, o):
    return nn.Sequential(nn.Linear(i, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Linear(h, o))


encoder = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten())
online = nn.Sequential(encoder, mlp(64, 256, 64))
predictor = mlp(64, 256, 64)
target = copy.deepcopy(online).requires_grad_(False)
opt = torch.optim.Adam(list(online.parameters()) + list(predictor.parameters()), lr=1e-3)


def regression(p, z):
    return 2 - 2 * F.cosine_similarity(p, z.detach(), dim=-1).mean()


for epoch in range(5):
    perm = torch.randperm(4096)
    for i in range(0, 4096, 128):
        x = images[perm[i:i + 128]]
        v1, v2 = augment(x), augment(x)
        p1, p2 = predictor(online(v1)), predictor(online(v2))
        with torch.no_grad():
            z1, z2 = target(v1), target(v2)
        loss = regression(p1, z2) + regression(p2, z1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for pt, po in zip(target.parameters(), online.parameters(), strict=True):
                pt.mul_(0.99).add_(po, alpha=0.01)
    print(epoch, loss.item())
