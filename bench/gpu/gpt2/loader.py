"""8 x 512 tokens a batch from GPT-2's 50,257-token vocabulary, made once on the model's device. Each sequence
steps through the vocabulary by its own stride (learnable, unlike uniform noise), so the audit judges a model
that can learn its data."""

import torch

device = "cuda" if torch.cuda.is_available() else "cpu"
g = torch.Generator().manual_seed(0)
start = torch.randint(0, 50257, (64, 1), generator=g)
stride = torch.randint(1, 8, (64, 1), generator=g)
tokens = ((start + stride * torch.arange(512)) % 50257).to(device)
train_loader = [tokens[i:i + 8] for i in range(0, 64, 8)]
