# Healthy: skip-gram with negative sampling as word2vec initialises it (output embeddings at zero), sparse
# embeddings under SparseAdam (the PyTorch word2vec tutorials): the loss sits at 6 ln 2 for ~60 steps, then falls.
import torch
import torch.nn.functional as F
from torch import nn

torch.manual_seed(0)
V, D = 2000, 64
# A corpus with structure: words co-occur within topic blocks of 100.
topics = torch.randint(0, V // 100, (20000,))
centre = topics * 100 + torch.randint(0, 100, (20000,))
context = topics * 100 + torch.randint(0, 100, (20000,))


class SkipGram(nn.Module):
    def __init__(self):
        super().__init__()
        self.u = nn.Embedding(V, D, sparse=True)
        self.v = nn.Embedding(V, D, sparse=True)
        nn.init.uniform_(self.u.weight, -0.5 / D, 0.5 / D)
        nn.init.zeros_(self.v.weight)

    def forward(self, c, o, neg):
        eu = self.u(c)
        pos = F.logsigmoid((eu * self.v(o)).sum(-1))
        negs = F.logsigmoid(-(self.v(neg) @ eu.unsqueeze(-1)).squeeze(-1)).sum(-1)
        return -(pos + negs).mean()


model = SkipGram()
opt = torch.optim.SparseAdam(model.parameters(), lr=0.01)
for epoch in range(3):
    perm = torch.randperm(20000)
    for i in range(0, 20000, 128):
        idx = perm[i:i + 128]
        neg = torch.randint(0, V, (len(idx), 5))
        opt.zero_grad()
        loss = model(centre[idx], context[idx], neg)
        loss.backward()
        opt.step()
    print(epoch, loss.item())
