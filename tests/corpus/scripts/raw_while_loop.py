# makemore-style: raw tensors, no nn.Module, no DataLoader, a while loop with a manual batch index.
import torch
import torch.nn.functional as F

g = torch.Generator().manual_seed(2147483647)
vocab, block, n_embd, n_hidden = 27, 3, 10, 200
Xtr = torch.randint(0, vocab, (20000, block), generator=g)
Ytr = torch.where(torch.rand(20000, generator=g) < 0.7, (Xtr[:, -1] + 1) % vocab, Xtr[:, 0])
C = torch.randn((vocab, n_embd), generator=g)
W1 = torch.randn((n_embd * block, n_hidden), generator=g) * (5 / 3) / (n_embd * block) ** 0.5
b1 = torch.randn(n_hidden, generator=g) * 0.01
W2 = torch.randn((n_hidden, vocab), generator=g) * 0.01
b2 = torch.zeros(vocab)
parameters = [C, W1, b1, W2, b2]
for p in parameters:
    p.requires_grad = True
opt = torch.optim.SGD(parameters, lr=0.1)
i = 0
while i < 20000:
    ix = torch.randint(0, Xtr.shape[0], (32,), generator=g)
    emb = C[Xtr[ix]]
    h = torch.tanh(emb.view(emb.shape[0], -1) @ W1 + b1)
    logits = h @ W2 + b2
    loss = F.cross_entropy(logits, Ytr[ix])
    opt.zero_grad()
    loss.backward()
    opt.step()
    if i % 1000 == 0:
        print(f"{i:7d}: {loss.item():.4f}")
    i += 1
