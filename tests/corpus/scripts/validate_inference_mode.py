# Fault (eval-in-train-mode): validation inside torch.inference_mode(), but the model is never switched to eval.
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, random_split


def validate(model, loader):
    with torch.inference_mode():
        return sum(nn.functional.cross_entropy(model(x), y).item() for x, y in loader) / len(loader)


def main():
    torch.manual_seed(0)
    x = torch.randn(3000, 20)
    y = (x[:, 0] * x[:, 1] > 0).long()
    train, val = random_split(TensorDataset(x, y), [2500, 500])
    train_loader = DataLoader(train, batch_size=50, shuffle=True)
    val_loader = DataLoader(val, batch_size=100)
    model = nn.Sequential(nn.Linear(20, 64), nn.BatchNorm1d(64), nn.Tanh(), nn.Linear(64, 64), nn.BatchNorm1d(64),
                          nn.Tanh(), nn.Linear(64, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(10):
        for step, (xb, yb) in enumerate(train_loader):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            optimizer.step()
            if step % 25 == 0:
                print(epoch, step, validate(model, val_loader))


if __name__ == "__main__":
    main()
