"""Eight fixed batches of 64 random inputs with random labels, cycled: memory, not learning, is measured."""

import torch

g = torch.Generator().manual_seed(0)
train_loader = [(torch.randn(64, 1024, generator=g), torch.randint(0, 10, (64,), generator=g)) for _ in range(8)]
