# Fault (lr-schedule): CosineAnnealingLR with T_max counted in epochs, stepped after every batch.
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

EPOCHS = 10
torch.manual_seed(0)
x = torch.randn(4096, 3, 8, 8)
y = torch.randint(0, 5, (4096,))
x += y.view(-1, 1, 1, 1) * 0.2
loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                      nn.Linear(128, 5))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)
for epoch in range(EPOCHS):
    for xb, yb in loader:
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
        sched.step()
