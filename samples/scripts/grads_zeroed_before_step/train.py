"""Fault: zero_grad() sits between backward() and step(), so every step sees no gradient."""
import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 128)
        self.fc2 = nn.Linear(128, 8)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


def main():
    torch.manual_seed(0)
    data = torch.randn(4096, 32)
    labels = (data @ torch.randn(32, 8)).argmax(1)
    net = Net()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for i in range(0, 4096 * 5, 64):
        j = i % 4096
        out = net(data[j:j + 64])
        loss = F.cross_entropy(out, labels[j:j + 64])
        loss.backward()
        optimizer.zero_grad()
        optimizer.step()


if __name__ == "__main__":
    main()
