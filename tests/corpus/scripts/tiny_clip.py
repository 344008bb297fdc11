# Fault (clip-too-tight): a CIFAR-style CNN trainer whose clip threshold lost a decimal (1e-2 for 1.0), positional,
# with nn.utils imported as a module, inside a train_one_epoch() function.
import torch
from torch import nn
from torch.nn import utils
from torch.utils.data import DataLoader, TensorDataset

GRAD_CLIP = 1e-2


def train_one_epoch(net, loader, optimizer, criterion):
    net.train()
    for images, labels in loader:
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(net(images), labels)
        loss.backward()
        utils.clip_grad_norm_(net.parameters(), GRAD_CLIP)
        optimizer.step()
    return loss.item()


def main():
    torch.manual_seed(0)
    proto = torch.randn(10, 3, 16, 16)
    y = torch.randint(0, 10, (5000,))
    x = proto[y] + torch.randn(5000, 3, 16, 16)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
    net = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(64, 10))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for epoch in range(4):
        print(epoch, train_one_epoch(net, loader, optimizer, nn.CrossEntropyLoss()))


if __name__ == "__main__":
    main()
