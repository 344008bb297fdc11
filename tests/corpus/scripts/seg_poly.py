# Semantic segmentation, DeepLab recipe: CrossEntropyLoss(ignore_index=255) on void borders, SGD 0.01 momentum 0.9,
# wd 1e-4, poly schedule stepped per iteration over the whole run.
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
N, C = 256, 5
yy, xx = torch.meshgrid(torch.arange(32.), torch.arange(32.), indexing="ij")
cls = torch.randint(1, C, (N,))
c = torch.rand(N, 2) * 16 + 8
inside = ((yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2)
mask = torch.where(inside < 40, cls[:, None, None], torch.zeros_like(cls)[:, None, None]).long()
mask[(inside > 34) & (inside < 46)] = 255  # void border, as in PASCAL VOC
img = torch.randn(N, 3, 32, 32) * 0.5 + nn.functional.one_hot(mask.clamp(max=C - 1), C).permute(0, 3, 1, 2)[:, :3]
loader = DataLoader(TensorDataset(img, mask), batch_size=8, shuffle=True)
net = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                    nn.Conv2d(32, 32, 3, padding=2, dilation=2), nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, C, 1))
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
epochs = 30
total = epochs * len(loader)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: (1 - it / total) ** 0.9)
crit = nn.CrossEntropyLoss(ignore_index=255)
for epoch in range(epochs):
    for x, y in loader:
        loss = crit(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
