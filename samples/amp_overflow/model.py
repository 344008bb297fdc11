"""Pathology: a tabular classifier trained in fp16 whose inputs keep a raw magnitude (an income in dollars).

The first Linear's outputs reach ~1e5, past fp16's 65504: they are inf under autocast, the loss is NaN and the
GradScaler skips every step. Expected: input-scale as the root cause (standardising the inputs removes the
overflow), with amp-overflow, loss-nan and dead-units explained by it; amp-overflow's own fixes are
verified too, each on its own copy: bf16, and layer 0 alone kept in float32.
"""

import torch
from torch import nn

torch.manual_seed(0)

amp = "fp16"  # the job trains under torch.autocast(dtype=torch.float16) with a GradScaler

model = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 5))


def make_optimizer(params):
    return torch.optim.AdamW(params, lr=1e-3)
