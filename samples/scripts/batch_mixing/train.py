"""Fault: an LSTM made without batch_first=True and fed (batch, time, features): it reads the batch as time, so
each sample's prediction depends on the samples before it in the batch. The script version of
samples/batch_mixing, written as a plain epoch loop over a DataLoader."""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

g = torch.Generator().manual_seed(0)
X = torch.randn(2048, 12, 8, generator=g)
Y = (X[:, :, 0].sum(1) > 0).long() + (X[:, :, 1].sum(1) > 2).long()
loader = DataLoader(TensorDataset(X, Y), batch_size=32, shuffle=True)


class SequenceClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(8, 32)  # batch_first defaults to False
        self.head = nn.Linear(32, 3)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def main():
    torch.manual_seed(0)
    model = SequenceClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _epoch in range(10):
        for x, y in loader:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()


if __name__ == "__main__":
    main()
