# Fault (dropout-rate): ported from TensorFlow 1: keep_prob=0.9 became nn.Dropout(0.9), which drops 90% of the units.
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
C = 10
centers = torch.randn(C, 64)
y = torch.randint(0, C, (8192,))
x = centers[y] + 0.8 * torch.randn(8192, 64)
loader = DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True)
model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.9), nn.Linear(256, 256), nn.ReLU(),
                      nn.Dropout(0.9), nn.Linear(256, C))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(20):
    for xb, yb in loader:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
    print(epoch, loss.item())
