# Fault: CrossEntropyLoss(reduction="sum") with the rate tuned for the mean: batch 256 multiplies every step by 256.
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
w = torch.randn(40, 8)
x = torch.randn(20000, 40)
y = (x @ w + 0.5 * torch.randn(20000, 8)).argmax(1)
loader = DataLoader(TensorDataset(x, y), batch_size=256, shuffle=True)
model = nn.Sequential(nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 8))
criterion = nn.CrossEntropyLoss(reduction="sum")
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
for epoch in range(3):
    running = 0.0
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        optimizer.step()
        running += loss.item() / len(xb)
    print(epoch, running / len(loader))
