"""Character-level language-model batches from names.txt: x is BLOCK characters, y is x shifted by one."""

from pathlib import Path

import torch

NAMES = Path(__file__).with_name("names.txt")


class CharBatches:
    def __init__(self, block=16, batch_size=32, batches=500, seed=1337):
        text = "." + ".".join(NAMES.read_text().splitlines()) + "."
        chars = sorted(set(text))
        self.data = torch.tensor([chars.index(c) for c in text])
        self.block, self.batch_size, self.batches, self.seed = block, batch_size, batches, seed

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        for _ in range(self.batches):
            ix = torch.randint(len(self.data) - self.block - 1, (self.batch_size,), generator=g)
            x = torch.stack([self.data[i:i + self.block] for i in ix])
            y = torch.stack([self.data[i + 1:i + 1 + self.block] for i in ix])
            yield x, y
