"""Pathology: model.half() "for speed", trained with Adam at its default eps=1e-8, which is 0 in float16: where a
gradient's second moment underflows, the update divides zero by zero. The forward casts its input to the
weights' dtype, as such code does.

Expected: half-precision-weights (error) as the root cause; the fix is mixed precision (float32 weights under
autocast), which the replay does not apply for the user (the model's own forward casts to float16).
"""

import torch
from torch import nn

torch.manual_seed(0)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 5))

    def forward(self, x):
        return self.body(x.to(self.body[0].weight.dtype)).float()


model = Net().half()


def make_optimizer(params):
    return torch.optim.Adam(params, lr=1e-3)
