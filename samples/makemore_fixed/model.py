"""The makemore lecture's MLP after its fixes: small output layer, zero output bias, fan-in scaled tanh layer.

Expected diagnosis: clean. The loss at init is close to -ln(1/27) = 3.29 and few tanh units saturate.
"""

import torch
from torch import nn

VOCAB, N_EMBD, BLOCK, N_HIDDEN = 27, 10, 3, 200


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(2147483647)
        fan_in = N_EMBD * BLOCK
        self.C = nn.Parameter(torch.randn((VOCAB, N_EMBD), generator=g))
        # Kaiming init for tanh: gain 5/3 over sqrt(fan_in).
        self.W1 = nn.Parameter(torch.randn((fan_in, N_HIDDEN), generator=g) * (5 / 3) / fan_in**0.5)
        self.b1 = nn.Parameter(torch.randn(N_HIDDEN, generator=g) * 0.01)
        # A small output layer and a zero bias give near-uniform probabilities at init.
        self.W2 = nn.Parameter(torch.randn((N_HIDDEN, VOCAB), generator=g) * 0.01)
        self.b2 = nn.Parameter(torch.randn(VOCAB, generator=g) * 0)

    def forward(self, x):
        emb = self.C[x]
        hpreact = emb.view(emb.shape[0], -1) @ self.W1 + self.b1
        h = torch.tanh(hpreact)
        return h @ self.W2 + self.b2


model = MLP()


def make_optimizer(params):
    return torch.optim.SGD(params, lr=0.1)  # the lecture's learning rate
