# Node classification with a 2-layer GCN written by hand (Kipf & Welling recipe: Adam 0.01, wd 5e-4,
# dropout 0.5), full-batch: the same graph every step, as every GCN tutorial does.
import torch
import torch.nn.functional as F

torch.manual_seed(0)
N, FEAT, C = 600, 50, 4
y = torch.randint(0, C, (N,))
x = torch.randn(N, FEAT) + F.one_hot(y, C).float().repeat(1, FEAT // C + 1)[:, :FEAT] * 0.5
same = (y[:, None] == y[None, :]).float()
adj = (torch.rand(N, N) < 0.02 * same + 0.002).float()
adj = ((adj + adj.T) > 0).float() + torch.eye(N)
d = adj.sum(1).rsqrt()
a_hat = d[:, None] * adj * d[None, :]
train_mask = torch.zeros(N, dtype=torch.bool)
train_mask[:140] = True

class GCN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = torch.nn.Linear(FEAT, 16)
        self.l2 = torch.nn.Linear(16, C)

    def forward(self, x, a):
        h = F.relu(a @ self.l1(x))
        h = F.dropout(h, 0.5, self.training)
        return a @ self.l2(h)

model = GCN()
opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
for epoch in range(200):
    model.train()
    opt.zero_grad()
    out = model(x, a_hat)
    loss = F.cross_entropy(out[train_mask], y[train_mask])
    loss.backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x, a_hat).argmax(1)[~train_mask] == y[~train_mask]).float().mean()
    if epoch % 20 == 0:
        print(epoch, loss.item(), acc.item())
