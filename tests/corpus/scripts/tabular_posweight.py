# Imbalanced binary tabular classification: standardised features, BCEWithLogitsLoss(pos_weight),
# Adam 1e-3, ReduceLROnPlateau on the validation loss once per epoch.
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

rng = np.random.default_rng(0)
n = 8000
X = rng.normal(size=(n, 12)) * rng.uniform(0.5, 50, size=12) + rng.uniform(-100, 100, size=12)
w = rng.normal(size=12) / X.std(0)
logit = (X - X.mean(0)) @ w - 2.2
yb = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
mu, sd = X[:6000].mean(0), X[:6000].std(0)
Xs = ((X - mu) / sd).astype(np.float32)
tr = TensorDataset(torch.from_numpy(Xs[:6000]), torch.from_numpy(yb[:6000]))
va = TensorDataset(torch.from_numpy(Xs[6000:]), torch.from_numpy(yb[6000:]))
pos = yb[:6000].mean()
net = nn.Sequential(nn.Linear(12, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
crit = nn.BCEWithLogitsLoss(pos_weight=torch.tensor((1 - pos) / pos))
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=2)
for epoch in range(30):
    net.train()
    for xb, yb_ in DataLoader(tr, batch_size=128, shuffle=True):
        opt.zero_grad()
        loss = crit(net(xb).squeeze(1), yb_)
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        vl = sum(crit(net(a).squeeze(1), b).item() for a, b in DataLoader(va, batch_size=512))
    sched.step(vl)
    print(epoch, vl)
