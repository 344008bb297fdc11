"""Information: an attention-pooling classifier that calls F.softmax without `dim`. On its 2-D scores torch picks
dim=1, which is what was meant here, and warns that the implicit choice is deprecated (on a 3-D input it would
pick dim=0, the batch). The model trains well; the warning is reported once, with this file's line.

Expected: torch-warnings (info), nothing louder.
"""

import torch
import torch.nn.functional as F
from torch import nn

torch.manual_seed(0)  # the same initial weights in every process


class Pooled(nn.Module):
    def __init__(self, features=20, hidden=64, classes=5):
        super().__init__()
        self.embed = nn.Linear(features, hidden)
        self.score = nn.Linear(hidden, 1)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        h = torch.relu(self.embed(x)).unsqueeze(1).expand(-1, 4, -1)  # four views of each sample
        weights = F.softmax(self.score(h).squeeze(-1))  # (B, 4): no dim given
        return self.head((weights.unsqueeze(-1) * h).sum(1))


model = Pooled()


def make_optimizer(params):
    return torch.optim.AdamW(params, lr=3e-3)
