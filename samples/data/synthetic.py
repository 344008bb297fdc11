"""Small learnable synthetic datasets, generated from a fixed seed so every audit sees the same batches."""

import torch


class Batches:
    """Iterates fixed-size minibatches of (X, Y) in a seeded random order; re-iterable like a DataLoader."""

    def __init__(self, X, Y, batch_size=32, seed=0):
        self.X, self.Y, self.batch_size, self.seed = X, Y, batch_size, seed

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(len(self.X), generator=g)
        for i in range(0, len(order) - self.batch_size + 1, self.batch_size):
            ix = order[i:i + self.batch_size]
            yield self.X[ix], self.Y[ix]


def blobs(n=4096, features=20, classes=5, seed=0, spread=0.4):
    """Gaussian clusters with standardised features: a classification task an MLP learns in a few steps."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, features, generator=g) * spread
    Y = torch.randint(0, classes, (n,), generator=g)
    X = centers[Y] + torch.randn(n, features, generator=g)
    X = (X - X.mean(0)) / X.std(0)
    return X, Y


def images(n=2048, classes=10, size=32, channels=3, seed=0):
    """Each class is a fixed random low-frequency pattern plus noise, standardised per channel."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(classes, channels, 4, 4, generator=g)
    patterns = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    Y = torch.randint(0, classes, (n,), generator=g)
    X = patterns[Y] + 3.0 * torch.randn(n, channels, size, size, generator=g)
    X = (X - X.mean((0, 2, 3), keepdim=True)) / X.std((0, 2, 3), keepdim=True)
    return X, Y


def regression(n=4096, features=16, seed=0, noise=0.1):
    """A smooth nonlinear target of standardised features, itself standardised."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, features, generator=g)
    W = torch.randn(features, 1, generator=g) / features**0.5
    Y = torch.sin(X @ W * 2) + 0.5 * (X[:, :1] * X[:, 1:2]) + noise * torch.randn(n, 1, generator=g)
    Y = (Y - Y.mean()) / Y.std()
    return X, Y
