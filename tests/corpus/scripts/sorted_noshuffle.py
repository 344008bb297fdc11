# Fault: an ImageFolder-style dataset, stored class by class, loaded with shuffle=False: each batch is one class.
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
proto = torch.randn(10, 3, 16, 16)
y = torch.arange(10).repeat_interleave(500)  # sorted, as os.listdir over class folders gives them
x = proto[y] + torch.randn(5000, 3, 16, 16)
train = DataLoader(TensorDataset(x, y), batch_size=50, shuffle=False)
model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                      nn.Linear(256, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
for epoch in range(3):
    for xb, yb in train:
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    print(epoch)
