"""Healthy: PyTorch's own nn.TransformerEncoder (code written by others, default init) as a char-level LM.

Pre-norm layers with GELU, a causal mask, Adam lr 3e-4: the settings PyTorch's documentation and tutorials use.
"""

import torch
from torch import nn

torch.manual_seed(0)  # the same initial weights in every process

VOCAB, BLOCK, D = 27, 16, 64


class CharTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D)
        self.pos = nn.Parameter(torch.zeros(1, BLOCK, D))  # zero at init: its ratios must not raise alarms
        layer = nn.TransformerEncoderLayer(D, nhead=4, dim_feedforward=4 * D, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=3, enable_nested_tensor=False)
        self.head = nn.Linear(D, VOCAB)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(BLOCK))

    def forward(self, idx):
        T = idx.shape[1]
        x = self.embed(idx) + self.pos[:, :T]
        return self.head(self.encoder(x, mask=self.mask[:T, :T], is_causal=True))


model = CharTransformer()


def make_optimizer(params):
    return torch.optim.Adam(params, lr=3e-4)
