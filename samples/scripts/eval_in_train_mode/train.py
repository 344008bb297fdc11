"""Fault: validation under no_grad, but the model is never put in eval mode."""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
x = torch.randn(1024, 16)
y = (x[:, :4].sum(1) > 0).long()
train = DataLoader(TensorDataset(x[:768], y[:768]), batch_size=32, shuffle=True)
val = DataLoader(TensorDataset(x[768:], y[768:]), batch_size=128)

model = nn.Sequential(nn.Linear(16, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
for epoch in range(10):
    for xb, yb in train:
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    with torch.no_grad():
        val_loss = sum(nn.functional.cross_entropy(model(xb), yb).item() for xb, yb in val) / len(val)
    print(f"epoch {epoch} val loss {val_loss:.3f}")
