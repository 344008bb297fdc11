"""Token sequences from a sparse bigram chain over 1024 tokens (each token has 8 likely successors)."""

import torch

VOCAB, BATCH, LENGTH = 1024, 32, 64

g = torch.Generator().manual_seed(0)
successors = torch.randint(0, VOCAB, (VOCAB, 8), generator=g)
tokens = torch.empty(BATCH * 16, LENGTH + 1, dtype=torch.long)
tokens[:, 0] = torch.randint(0, VOCAB, (len(tokens),), generator=g)
for t in range(LENGTH):
    tokens[:, t + 1] = successors[tokens[:, t], torch.randint(0, 8, (len(tokens),), generator=g)]
train_loader = [(tokens[i:i + BATCH, :-1], tokens[i:i + BATCH, 1:]) for i in range(0, len(tokens), BATCH)]
