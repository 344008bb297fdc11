"""Healthy: what careful scripts do. Gradient accumulation (zero_grad every 4 backward passes), zero_grad with
set_to_none=False, warm-up then cosine over the whole run, a frozen embedding, validation between eval() and
train(), and a GradScaler whose gradients are unscaled before clipping."""
import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Classifier(nn.Module):
    def __init__(self, vocab=50, dim=32, classes=5):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.embed.weight.requires_grad_(False)  # frozen on purpose
        self.body = nn.Sequential(nn.Linear(dim * 8, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.1))
        self.head = nn.Linear(128, classes)

    def forward(self, tokens):
        return self.head(self.body(self.embed(tokens).flatten(1)))


def evaluate(model, loader):
    model.eval()
    with torch.no_grad():
        losses = [nn.functional.cross_entropy(model(xb), yb) for xb, yb in loader]
    model.train()
    return torch.stack(losses).mean().item()


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--accumulate", type=int, default=4)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    tokens = torch.randint(0, 50, (2048, 8))
    labels = tokens[:, :3].sum(1) % 5
    train = DataLoader(TensorDataset(tokens[:1792], labels[:1792]), batch_size=16, shuffle=True, drop_last=True)
    val = DataLoader(TensorDataset(tokens[1792:], labels[1792:]), batch_size=64)
    model = Classifier()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3, weight_decay=0.01)
    total = args.epochs * len(train) // args.accumulate
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=20)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - 20)
    scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[20])
    scaler = torch.amp.GradScaler("cpu")
    model.train()
    for epoch in range(args.epochs):
        for i, (xb, yb) in enumerate(train):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = nn.functional.cross_entropy(model(xb), yb) / args.accumulate
            scaler.scale(loss).backward()
            if (i + 1) % args.accumulate == 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=False)
                scheduler.step()
            if i % 40 == 0:
                print(f"epoch {epoch} step {i} val {evaluate(model, val):.3f}")


if __name__ == "__main__":
    main()
