# CutMix on a small CNN: soft targets (class probabilities) into F.cross_entropy, label smoothing, SGD+nesterov.
import torch
import torch.nn.functional as F
from torch import nn

torch.manual_seed(0)
C = 10
proto = torch.randn(C, 3, 32, 32)
y_all = torch.randint(0, C, (4096,))
x_all = proto[y_all] + torch.randn(4096, 3, 32, 32)
net = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                    nn.Flatten(), nn.Linear(64, C))
opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
for epoch in range(5):
    perm = torch.randperm(4096)
    for i in range(0, 4096, 64):
        x, y = x_all[perm[i:i + 64]].clone(), y_all[perm[i:i + 64]]
        target = F.one_hot(y, C).float() * 0.9 + 0.1 / C
        lam = float(torch.distributions.Beta(1.0, 1.0).sample())
        j = torch.randperm(len(x))
        cut = int(32 * (1 - lam) ** 0.5)
        if cut:
            x[:, :, :cut, :cut] = x[j, :, :cut, :cut]
        area = cut * cut / 1024
        target = (1 - area) * target + area * target[j]
        loss = F.cross_entropy(net(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(epoch, loss.item())
