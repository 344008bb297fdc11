import torch
from torch.utils.data import DataLoader, TensorDataset

g = torch.Generator().manual_seed(3)
X = torch.randn(6000, 30, generator=g)
score = X[:, :5].sum(1) + 0.5 * torch.randn(6000, generator=g)
rating = torch.bucketize(score, torch.tensor([-2.5, -0.8, 0.8, 2.5])) + 1
train_loader = DataLoader(TensorDataset(X, rating), batch_size=64, shuffle=True)
