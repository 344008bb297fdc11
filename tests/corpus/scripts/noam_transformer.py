# "Attention is all you need" recipe: nn.Transformer, Noam schedule via LambdaLR stepped per batch,
# Adam(0.9, 0.98, eps=1e-9), label smoothing 0.1, padding ignored. Task: reverse a sequence.
import math
import torch
import torch.nn as nn

PAD, BOS, V, D = 0, 1, 20, 64
torch.manual_seed(0)

def batch(n=32):
    L = torch.randint(5, 12, (n,))
    src = torch.full((n, 12), PAD)
    tgt = torch.full((n, 13), PAD)
    for i, n_tok in enumerate(L):
        s = torch.randint(2, V, (int(n_tok),))
        src[i, :n_tok] = s
        tgt[i, 0] = BOS
        tgt[i, 1:n_tok + 1] = s.flip(0)
    return src, tgt

class Seq2Seq(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, D, padding_idx=PAD)
        self.pos = nn.Parameter(torch.randn(1, 16, D) * 0.02)
        self.tf = nn.Transformer(D, 4, 2, 2, 128, dropout=0.1, batch_first=True)
        self.out = nn.Linear(D, V)

    def forward(self, src, tgt_in):
        s = self.emb(src) * math.sqrt(D) + self.pos[:, :src.size(1)]
        t = self.emb(tgt_in) * math.sqrt(D) + self.pos[:, :tgt_in.size(1)]
        mask = self.tf.generate_square_subsequent_mask(tgt_in.size(1))
        h = self.tf(s, t, tgt_mask=mask, src_key_padding_mask=src == PAD, tgt_key_padding_mask=tgt_in == PAD,
                    memory_key_padding_mask=src == PAD)
        return self.out(h)

model = Seq2Seq()
opt = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
warmup = 400
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: D ** -0.5 * min((s + 1) ** -0.5, (s + 1) * warmup ** -1.5))
crit = nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=0.1)
for step in range(3000):
    src, tgt = batch()
    logits = model(src, tgt[:, :-1])
    loss = crit(logits.reshape(-1, V), tgt[:, 1:].reshape(-1))
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    if step % 100 == 0:
        print(step, loss.item())
