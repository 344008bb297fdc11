# Fault: the loss rebuilt from a Python float (to "log it cleanly"): it has no graph to the model, so backward
# reaches no parameter and the model never changes.
import torch
from torch import nn

torch.manual_seed(0)
x = torch.randn(4000, 10)
y = x[:, :1] * 2 - x[:, 1:2]
model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 1))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
mse = nn.MSELoss()
for epoch in range(20):
    for i in range(0, 4000, 100):
        value = mse(model(x[i:i + 100]), y[i:i + 100]).item()
        loss = torch.tensor(value, requires_grad=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(epoch, value)
