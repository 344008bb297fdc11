# Fault: ReduceLROnPlateau(patience=5) stepped on every batch's training loss: batch noise looks like a plateau,
# and the rate is cut tenfold every few batches.
import torch
import torch.nn.functional as F
from torch import nn

torch.manual_seed(0)
w = torch.randn(32, 5)
x = torch.randn(20000, 32)
y = (x @ w + 0.8 * torch.randn(20000, 5)).argmax(1)
model = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 5))
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1, patience=5)
for epoch in range(3):
    perm = torch.randperm(20000)
    for i in range(0, 20000, 32):
        idx = perm[i:i + 32]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss.item())
    print(epoch, loss.item(), opt.param_groups[0]["lr"])
