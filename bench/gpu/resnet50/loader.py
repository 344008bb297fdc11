"""ImageNet-shaped batches (64 x 3 x 224 x 224, 1000 classes), made once on the model's device: the benchmark
times the training step, not a host-to-device copy or an image decoder."""

import torch

device = "cuda" if torch.cuda.is_available() else "cpu"
g = torch.Generator(device=device).manual_seed(0)
batches = [(torch.randn(64, 3, 224, 224, generator=g, device=device),
            torch.randint(0, 1000, (64,), generator=g, device=device)) for _ in range(8)]
train_loader = batches  # a list: re-iterable, one epoch is 8 batches
