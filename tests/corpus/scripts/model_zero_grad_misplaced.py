# Fault (grads-zeroed-before-step): model.zero_grad() called after backward, "to be safe", right before step.
import torch
import torch.nn as nn
import torch.nn.functional as F


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(10, 50)
        self.out = nn.Linear(50, 1)

    def forward(self, x):
        return self.out(F.relu(self.hidden(x))).squeeze(-1)


torch.manual_seed(0)
X = torch.randn(5000, 10)
Y = X[:, 0] * 2 - X[:, 1] + 0.1 * torch.randn(5000)
reg = Regressor()
opt = torch.optim.RMSprop(reg.parameters(), lr=1e-3)
for epoch in range(50):
    for i in range(0, 5000, 100):
        pred = reg(X[i:i + 100])
        loss = F.mse_loss(pred, Y[i:i + 100])
        loss.backward()
        reg.zero_grad()
        opt.step()
