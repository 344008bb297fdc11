# Healthy: a residual MLP with weight-normed layers (torch.nn.utils.parametrizations.weight_norm), activation
# checkpointing (torch.utils.checkpoint) and OneCycleLR stepped per batch over the whole run, SGD nesterov.
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm
from torch.utils.checkpoint import checkpoint

torch.manual_seed(0)
X = torch.randn(8192, 64)
Y = (X[:, :8].sum(1) > 0).long() + 2 * (X[:, 8:16].sum(1) > 0).long()


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc1 = weight_norm(nn.Linear(d, 4 * d))
        self.fc2 = weight_norm(nn.Linear(4 * d, d))

    def forward(self, x):
        return x + self.fc2(F.gelu(self.fc1(self.norm(x))))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(64, 128)
        self.blocks = nn.ModuleList(Block(128) for _ in range(4))
        self.out = nn.Linear(128, 4)

    def forward(self, x):
        x = self.inp(x)
        for b in self.blocks:
            x = checkpoint(b, x, use_reentrant=False)
        return self.out(x)


model = Net()
epochs, bs = 4, 128
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, epochs=epochs, steps_per_epoch=8192 // bs)
for epoch in range(epochs):
    perm = torch.randperm(8192)
    for i in range(0, 8192, bs):
        idx = perm[i:i + bs]
        loss = F.cross_entropy(model(X[idx]), Y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    print(epoch, loss.item())
