# Fault (clip-before-unscale): mixed precision with a GradScaler, gradients clipped by value before unscale_.
import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(48, 192), nn.Linear(192, 192), nn.Linear(192, 6)])

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = nn.functional.gelu(layer(x))
        return self.layers[-1](x)


def run(steps=1000):
    torch.manual_seed(0)
    model, scaler = MLP(), torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    proj = torch.randn(48, 6)
    for _ in range(steps):
        x = torch.randn(128, 48)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(x), (x @ proj).argmax(1))
        opt.zero_grad()
        scaler.scale(loss).backward()
        nn.utils.clip_grad_value_(model.parameters(), 0.5)
        scaler.step(opt)
        scaler.update()


if __name__ == "__main__":
    run()
