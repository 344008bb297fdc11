"""The makemore lecture's dataset: every 3-character context of names.txt and the character that follows.

Names are from the makemore project (MIT licence, names.LICENSE beside this file).
"""

from pathlib import Path

import torch

BLOCK_SIZE = 3  # context length, as in the lecture
NAMES = Path(__file__).with_name("names.txt")


def build_dataset(block_size: int = BLOCK_SIZE):
    words = NAMES.read_text().splitlines()
    chars = sorted(set("".join(words)))
    stoi = {s: i + 1 for i, s in enumerate(chars)}
    stoi["."] = 0
    xs, ys = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + ".":
            ix = stoi[ch]
            xs.append(context)
            ys.append(ix)
            context = context[1:] + [ix]
    return torch.tensor(xs), torch.tensor(ys)


class MinibatchLoader:
    """Random minibatches of 32, as in the lecture; the same sequence every time it is iterated."""

    def __init__(self, batch_size: int = 32, batches: int = 500, seed: int = 2147483647):
        self.X, self.Y = build_dataset()
        self.batch_size, self.batches, self.seed = batch_size, batches, seed

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        for _ in range(self.batches):
            ix = torch.randint(0, self.X.shape[0], (self.batch_size,), generator=g)
            yield self.X[ix], self.Y[ix]
