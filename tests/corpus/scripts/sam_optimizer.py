# Healthy: SAM (Foret et al. 2021) as davda54/sam implements it: two forward-backward passes per step, the first
# pass's gradients cleared by first_step(zero_grad=True) after they moved the weights.
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class SAM(torch.optim.Optimizer):
    def __init__(self, params, base_optimizer, rho=0.05, **kwargs):
        defaults = dict(rho=rho, **kwargs)
        super().__init__(params, defaults)
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups

    @torch.no_grad()
    def first_step(self, zero_grad=False):
        grad_norm = self._grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / (grad_norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.state[p]["old_p"] = p.data.clone()
                p.add_(p.grad * scale.to(p))
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad=False):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.data = self.state[p]["old_p"]
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    def _grad_norm(self):
        return torch.norm(torch.stack([p.grad.norm(p=2) for g in self.param_groups for p in g["params"]
                                       if p.grad is not None]), p=2)


torch.manual_seed(0)
proto = torch.randn(10, 3, 16, 16)
y = torch.randint(0, 10, (4000,))
x = proto[y] + 0.8 * torch.randn(4000, 3, 16, 16)
loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Linear(64, 10))
optimizer = SAM(model.parameters(), torch.optim.SGD, lr=0.05, momentum=0.9, weight_decay=5e-4)
for epoch in range(5):
    for xb, yb in loader:
        F.cross_entropy(model(xb), yb).backward()
        optimizer.first_step(zero_grad=True)
        F.cross_entropy(model(xb), yb).backward()
        optimizer.second_step(zero_grad=True)
    print("epoch", epoch)
