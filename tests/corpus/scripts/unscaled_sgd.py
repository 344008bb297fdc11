# Fault (target-scale): a count in the thousands (bike rentals per day), SGD 0.01 on MSE, inputs standardised.
import numpy as np
import torch
from torch import nn

rng = np.random.default_rng(1)
X = rng.normal(size=(3000, 6)).astype(np.float32)
y = (4500 + X @ np.array([900, -300, 600, 200, 0, 100]) + 300 * rng.normal(size=3000)).astype(np.float32)
X_t, y_t = torch.from_numpy(X), torch.from_numpy(y).view(-1, 1)
net = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 1))
opt = torch.optim.SGD(net.parameters(), lr=0.01)
for epoch in range(50):
    perm = torch.randperm(3000)
    for i in range(0, 3000, 50):
        idx = perm[i:i + 50]
        loss = nn.functional.mse_loss(net(X_t[idx]), y_t[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(epoch, loss.item())
