# Fault (missing-zero-grad): "gradient accumulation" that steps every 4 batches but never clears the gradients.
import torch
import torch.nn as nn

ACCUM = 4


def batches(n_batches, bs=16, dim=64):
    w = torch.randn(dim, 10, generator=torch.Generator().manual_seed(1))
    for _ in range(n_batches):
        x = torch.randn(bs, dim)
        yield x, (x @ w).argmax(1)


def main():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.SiLU(), nn.Linear(256, 10))
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for i, (x, y) in enumerate(batches(5000)):
        loss = nn.functional.cross_entropy(model(x), y) / ACCUM
        loss.backward()
        if (i + 1) % ACCUM == 0:
            optim.step()


if __name__ == "__main__":
    main()
