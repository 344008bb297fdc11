# Fault (target-scale): a regression on house prices left in dollars (1e5..1e6), MSE, Adam 1e-3. Inputs standardised.
import torch
from torch import nn

torch.manual_seed(0)
X = torch.randn(5000, 8)
price = 300_000 + X @ torch.tensor([80e3, -20e3, 50e3, 10e3, 0., 5e3, 30e3, -15e3]) + 20e3 * torch.randn(5000)
ds = torch.utils.data.TensorDataset(X, price.unsqueeze(1))
model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(20):
    for xb, yb in torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True):
        loss = nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(epoch, loss.item())
