# Healthy: stochastic weight averaging as the PyTorch docs show it: SGD with cosine annealing, then SWALR and an
# AveragedModel updated every epoch from swa_start, BatchNorm statistics recomputed at the end.
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
proto = torch.randn(10, 3, 16, 16)
y = torch.randint(0, 10, (3000,))
x = proto[y] + torch.randn(3000, 3, 16, 16)
loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                      nn.Flatten(), nn.Linear(512, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
swa_model = AveragedModel(model)
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=20)
swa_start = 1
swa_scheduler = SWALR(optimizer, swa_lr=0.02)
for epoch in range(20):
    for xb, yb in loader:
        optimizer.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        optimizer.step()
    if epoch > swa_start:
        swa_model.update_parameters(model)
        swa_scheduler.step()
    else:
        scheduler.step()
    print(epoch)
update_bn(loader, swa_model)
