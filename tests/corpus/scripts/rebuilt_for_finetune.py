# Fault (stale-optimizer): the optimizer is built, then the model is rebuilt from a "pretrained" state dict.
import argparse
import copy

import torch
import torch.nn as nn


def build(num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, num_classes))


parser = argparse.ArgumentParser()
parser.add_argument("--pretrained", action="store_true", default=True)
args = parser.parse_args()
torch.manual_seed(0)
model = build(8)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
if args.pretrained:
    state = copy.deepcopy(model.state_dict())  # stands in for torch.load("pretrained.pt")
    model = build(8)
    model.load_state_dict(state)
x = torch.randn(2048, 8, 8)
y = (x.sum((1, 2)) > 0).long() * 3 + (x[:, 0].sum(1) > 0).long()
for epoch in range(20):
    for i in range(0, 2048, 64):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
        loss.backward()
        optimizer.step()
