# REINFORCE on a contextual bandit: loss = -(logp * advantage).mean(); a policy-gradient loss that can be
# negative and is not a supervised error.
import torch
from torch import nn

torch.manual_seed(0)
K, DIM = 5, 10
W_true = torch.randn(DIM, K)
policy = nn.Sequential(nn.Linear(DIM, 64), nn.Tanh(), nn.Linear(64, K))
opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
baseline = 0.0
for it in range(2000):
    ctx = torch.randn(128, DIM)
    dist = torch.distributions.Categorical(logits=policy(ctx))
    a = dist.sample()
    reward = (ctx @ W_true).gather(1, a[:, None]).squeeze(1) + 0.1 * torch.randn(128)
    baseline = 0.9 * baseline + 0.1 * reward.mean().item()
    loss = -(dist.log_prob(a) * (reward - baseline)).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    if it % 100 == 0:
        print(it, reward.mean().item())
