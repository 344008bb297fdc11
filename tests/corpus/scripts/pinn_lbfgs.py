# A physics-informed network for u'' = -pi^2 sin(pi x), u(0)=u(1)=0: Adam, then L-BFGS with a closure.
import math
import torch
from torch import nn

torch.manual_seed(0)
net = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))
xs = torch.linspace(0, 1, 200).unsqueeze(1).requires_grad_(True)
bc = torch.tensor([[0.0], [1.0]])

def residual_loss():
    u = net(xs)
    du = torch.autograd.grad(u.sum(), xs, create_graph=True)[0]
    d2u = torch.autograd.grad(du.sum(), xs, create_graph=True)[0]
    res = d2u + math.pi ** 2 * torch.sin(math.pi * xs)
    return res.pow(2).mean() + net(bc).pow(2).mean()

opt = torch.optim.Adam(net.parameters(), lr=1e-3)
for it in range(2000):
    opt.zero_grad()
    loss = residual_loss()
    loss.backward()
    opt.step()
lbfgs = torch.optim.LBFGS(net.parameters(), max_iter=50)
def closure():
    lbfgs.zero_grad()
    loss = residual_loss()
    loss.backward()
    return loss
for _ in range(10):
    lbfgs.step(closure)
print(residual_loss().item())
