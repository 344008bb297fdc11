"""Fault: a character-level transformer whose attention is called without is_causal=True, so each position
sees the very character it must predict; the loss falls fast, as if it learnt. Trained on the names of
samples/data/names.txt (makemore), next character from the previous ones. With --causal the mask is there, as
it should be."""
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

BLOCK, EMBD, HEADS = 16, 64, 4
CAUSAL = "--causal" in sys.argv[1:]
words = (Path(__file__).resolve().parents[2] / "data" / "names.txt").read_text().split()[:4000]
chars = sorted(set("".join(words)))
stoi = {c: i + 1 for i, c in enumerate(chars)}
text = [0] + [t for w in words for t in [stoi[c] for c in w] + [0]]
data = torch.tensor(text)
VOCAB = len(chars) + 1


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(EMBD), nn.LayerNorm(EMBD)
        self.qkv, self.proj = nn.Linear(EMBD, 3 * EMBD), nn.Linear(EMBD, EMBD)
        self.mlp = nn.Sequential(nn.Linear(EMBD, 4 * EMBD), nn.GELU(), nn.Linear(4 * EMBD, EMBD))

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, HEADS, C // HEADS).transpose(1, 2) for t in self.qkv(self.ln1(x)).split(EMBD, 2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=CAUSAL)  # the bug: is_causal left False
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp(self.ln2(x))


class CharGPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB, EMBD), nn.Embedding(BLOCK, EMBD)
        self.blocks = nn.Sequential(Block(), Block())
        self.head = nn.Linear(EMBD, VOCAB)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        return self.head(self.blocks(x))


torch.manual_seed(0)
model = CharGPT()
opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
step = 0
while step < 2000:
    ix = torch.randint(len(data) - BLOCK - 1, (32,))
    x = torch.stack([data[i:i + BLOCK] for i in ix])
    y = torch.stack([data[i + 1:i + BLOCK + 1] for i in ix])
    logits = model(x)
    loss = F.cross_entropy(logits.transpose(1, 2), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    step += 1
