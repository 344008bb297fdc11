# Fault (train-in-eval-mode): a Trainer class whose evaluate() calls model.eval(); model.train() is called once,
# before the epoch loop, so from the first evaluation on the network trains with BatchNorm frozen and dropout off.
import torch
from torch import nn


class Trainer:
    def __init__(self, model, lr=0.05):
        self.model = model
        self.opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
        self.loss = nn.CrossEntropyLoss()

    def evaluate(self, x, y):
        self.model.eval()
        with torch.no_grad():
            return (self.model(x).argmax(1) == y).float().mean().item()

    def fit(self, x, y, xv, yv, epochs=20, bs=64):
        self.model.train()
        for epoch in range(epochs):
            perm = torch.randperm(len(x))
            for i in range(0, len(x), bs):
                idx = perm[i:i + bs]
                self.opt.zero_grad()
                self.loss(self.model(x[idx]), y[idx]).backward()
                self.opt.step()
            print(epoch, self.evaluate(xv, yv))


torch.manual_seed(0)
x = torch.randn(1280, 3, 16, 16)
y = (x.mean((1, 2, 3)) > 0).long()
net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Dropout2d(0.1),
                    nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2))
Trainer(net).fit(x[:1024], y[:1024], x[1024:], y[1024:])
