# A torch.compile'd model (PyTorch 2 style): the optimizer built on the original module's parameters, the
# compiled wrapper called in the loop, fused AdamW, and a OneCycle schedule over the whole run stepped per batch.
import torch
from torch import nn


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(32, 10)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def main(steps=2000):
    torch.manual_seed(0)
    x = torch.randn(2048, 1, 16, 16)
    y = torch.randint(0, 10, (2048,))
    x += y.view(-1, 1, 1, 1) * 0.3
    model = ConvNet()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    compiled = torch.compile(model)
    for step in range(steps):
        idx = torch.randint(0, 2048, (64,))
        loss = nn.functional.cross_entropy(compiled(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()


if __name__ == "__main__":
    main()
