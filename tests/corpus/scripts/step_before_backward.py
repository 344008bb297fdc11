# Fault (grads-zeroed-before-step): the order slipped: zero_grad, step, then backward: every step applies cleared gradients.
import torch
from torch import nn

torch.manual_seed(0)
x = torch.randn(4000, 10)
y = (x[:, 0] * x[:, 1] > 0).long()
model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
for epoch in range(10):
    for i in range(0, 4000, 40):
        opt.zero_grad()
        opt.step()
        loss = nn.functional.cross_entropy(model(x[i:i + 40]), y[i:i + 40])
        loss.backward()
