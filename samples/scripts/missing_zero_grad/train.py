"""Fault: the loop never calls zero_grad(), so every update carries all earlier gradients."""
import torch
from torch import nn

torch.manual_seed(0)
X = torch.randn(4096, 32)
Y = (X @ torch.randn(32, 8)).argmax(1)
model = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 8))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

for step in range(1000):
    idx = torch.randint(0, len(X), (64,))
    loss = nn.functional.cross_entropy(model(X[idx]), Y[idx])
    loss.backward()
    opt.step()
    if step % 100 == 0:
        print(step, loss.item())
