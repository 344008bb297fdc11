"""The makemore lecture's MLP before its fixes: raw randn initialisation everywhere.

Expected diagnosis: the loss at init is ~27 against -ln(1/27) = 3.29 (confidently wrong logits), and
most tanh units sit in the flat tails (|h| > 0.97), where their gradient is near zero.
"""

import torch
from torch import nn

VOCAB, N_EMBD, BLOCK, N_HIDDEN = 27, 10, 3, 200


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(2147483647)
        self.C = nn.Parameter(torch.randn((VOCAB, N_EMBD), generator=g))
        self.W1 = nn.Parameter(torch.randn((N_EMBD * BLOCK, N_HIDDEN), generator=g))
        self.b1 = nn.Parameter(torch.randn(N_HIDDEN, generator=g))
        self.W2 = nn.Parameter(torch.randn((N_HIDDEN, VOCAB), generator=g))
        self.b2 = nn.Parameter(torch.randn(VOCAB, generator=g))

    def forward(self, x):
        emb = self.C[x]
        hpreact = emb.view(emb.shape[0], -1) @ self.W1 + self.b1
        h = torch.tanh(hpreact)
        return h @ self.W2 + self.b2


model = MLP()


def make_optimizer(params):
    return torch.optim.SGD(params, lr=0.1)  # the lecture's learning rate
