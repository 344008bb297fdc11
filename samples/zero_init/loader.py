"""Token sequences whose class is how many of their tokens are below 16 (0-1, 2, 3, 4 or more): learnable by
any model that sees its input, a bag of tokens included."""

import torch

g = torch.Generator().manual_seed(0)
ids = torch.randint(0, 64, (2048, 12), generator=g)
labels = (ids < 16).sum(1).sub(1).clamp(0, 3)
train_loader = [{"input_ids": ids[i:i + 32], "labels": labels[i:i + 32]} for i in range(0, len(ids), 32)]
