# A CTC acoustic model: conv front-end, BiGRU, log_softmax over classes, nn.CTCLoss with (T, N, C) layout.
import torch
from torch import nn

torch.manual_seed(0)
V, T, N = 12, 60, 16
class AM(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(20, 64, 5, padding=2)
        self.rnn = nn.GRU(64, 64, batch_first=True, bidirectional=True)
        self.out = nn.Linear(128, V)
    def forward(self, x):
        h = torch.relu(self.conv(x)).transpose(1, 2)
        h, _ = self.rnn(h)
        return self.out(h).log_softmax(-1).transpose(0, 1)
model = AM()
ctc = nn.CTCLoss(blank=0, zero_infinity=True)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
emb = torch.randn(V, 20)
for step in range(400):
    L = torch.randint(5, 15, (N,))
    labels = torch.randint(1, V, (N, 15))
    feats = torch.zeros(N, 20, T)
    for n in range(N):
        seq = labels[n, :L[n]].repeat_interleave(4)[:T]
        feats[n, :, :len(seq)] = emb[seq].T
    feats += 0.3 * torch.randn_like(feats)
    logp = model(feats)
    loss = ctc(logp, labels, torch.full((N,), T, dtype=torch.long), L)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 50 == 0:
        print(step, loss.item())
