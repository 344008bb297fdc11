# Fault (grads-zeroed-before-step): pytorch/examples-style loop whose optimizer.step() slid into the logging block.
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
proto = torch.randn(10, 1, 28, 28)
y = torch.randint(0, 10, (6000,))
x = proto[y] + torch.randn(6000, 1, 28, 28)
loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
model = nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 13 * 13, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
log_interval = 10
for epoch in range(1, 4):
    model.train()
    for batch_idx, (data, target) in enumerate(loader):
        optimizer.zero_grad()
        output = model(data)
        loss = F.cross_entropy(output, target)
        loss.backward()
        if batch_idx % log_interval == 0:
            print(f"Train Epoch: {epoch} [{batch_idx * len(data)}/{len(loader.dataset)}]\tLoss: {loss.item():.6f}")
            optimizer.step()
