# Fault (input-scale): images decoded from PNG as uint8 and only cast to float: 0..255 into a CNN, SGD momentum.
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
proto = torch.rand(10, 3, 32, 32) * 255
y = torch.randint(0, 10, (4096,))
x = (proto[y] * 0.6 + torch.rand(4096, 3, 32, 32) * 255 * 0.4).round().to(torch.uint8)
loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1),
                      nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
for epoch in range(5):
    for xb, yb in loader:
        loss = nn.functional.cross_entropy(model(xb.float()), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(epoch, loss.item())
