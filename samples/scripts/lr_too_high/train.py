"""Fault: a learning rate copied from a recipe for another model, far above where this one's loss falls
(SGD with momentum at 3.0 on a small MLP; `--lr 0.05` is healthy). The auditor's LR range test runs the script
itself with its rate swept, and proves its suggestion on the script.

    audit run samples/scripts/lr_too_high/train.py
    audit run samples/scripts/lr_too_high/train.py --lr 0.05    # clean
"""
import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lr", type=float, default=3.0)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    torch.manual_seed(0)
    x = torch.randn(4096, 20)
    y = (x[:, :10].sum(1) > 0).long() + 2 * (x[:, 10:].sum(1) > 0).long()  # four classes
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
    model = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 4))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(args.epochs):
        for xb, yb in loader:
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
        print(f"epoch {epoch}: loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
