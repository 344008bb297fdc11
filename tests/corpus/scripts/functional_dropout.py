# Fault: F.dropout in forward without training=self.training: dropout stays on under model.eval(), so every
# validation pass (and every prediction) is noisy.
import torch
import torch.nn.functional as F
from torch import nn

torch.manual_seed(0)
w = torch.randn(32, 5)
x = torch.randn(8000, 32)
y = (x @ w).argmax(1)
xv, yv = x[7000:], y[7000:]
x, y = x[:7000], y[:7000]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(32, 256), nn.Linear(256, 256), nn.Linear(256, 5)

    def forward(self, x):
        x = F.dropout(F.relu(self.fc1(x)), p=0.5)
        x = F.dropout(F.relu(self.fc2(x)), p=0.5)
        return self.fc3(x)


model = Net()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(8):
    model.train()
    perm = torch.randperm(7000)
    for i in range(0, 7000, 64):
        idx = perm[i:i + 64]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(xv).argmax(1) == yv).float().mean()
    print(epoch, float(acc))
