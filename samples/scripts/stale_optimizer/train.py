"""Fault: the optimizer is built for one model instance, then the model is rebuilt (here, "to add dropout")."""
import torch
from torch import nn


def make_model(p=0.0):
    return nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Dropout(p), nn.Linear(128, 8))


torch.manual_seed(0)
X = torch.randn(4096, 32)
Y = (X @ torch.randn(32, 8)).argmax(1)
model = make_model()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
model = make_model(p=0.1)
for _step in range(300):
    idx = torch.randint(0, len(X), (64,))
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(X[idx]), Y[idx])
    loss.backward()
    optimizer.step()
