# Knowledge distillation (Hinton 2015): a frozen teacher, a small student, KL at T=4 times T^2 plus CE.
import torch
from torch import nn
import torch.nn.functional as F

torch.manual_seed(0)
C, DIM = 10, 32
centers = torch.randn(C, DIM) * 2
def batch(n=128):
    y = torch.randint(0, C, (n,))
    return centers[y] + torch.randn(n, DIM), y
teacher = nn.Sequential(nn.Linear(DIM, 256), nn.ReLU(), nn.Linear(256, C))
topt = torch.optim.Adam(teacher.parameters(), 1e-3)
for _ in range(300):
    x, y = batch()
    topt.zero_grad()
    F.cross_entropy(teacher(x), y).backward()
    topt.step()
teacher.eval()
student = nn.Sequential(nn.Linear(DIM, 32), nn.ReLU(), nn.Linear(32, C))
opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
T, alpha = 4.0, 0.7
for step in range(2000):
    x, y = batch()
    with torch.no_grad():
        t = teacher(x)
    s = student(x)
    kd = F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="batchmean") * T * T
    loss = alpha * kd + (1 - alpha) * F.cross_entropy(s, y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 200 == 0:
        print(step, loss.item())
