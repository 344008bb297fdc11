# Fault: a sigmoid in the loop before BCEWithLogitsLoss, which applies its own: probabilities fed as logits.
import torch
from torch import nn

torch.manual_seed(0)
x = torch.randn(6000, 20)
y = ((x[:, :3].sum(1) + 0.3 * torch.randn(6000)) > 0).float().unsqueeze(1)
model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 1))
criterion = nn.BCEWithLogitsLoss()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(10):
    perm = torch.randperm(6000)
    for i in range(0, 6000, 100):
        idx = perm[i:i + 100]
        probs = torch.sigmoid(model(x[idx]))
        loss = criterion(probs, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(epoch, loss.item())
