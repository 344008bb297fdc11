# DistributedDataParallel under torchrun (gloo on the CPU), with a DistributedSampler. With --no-set-epoch the
# loop forgets sampler.set_epoch(epoch), so every epoch repeats the first one's order (rank-same-batches).
# With --no-sampler the loader shuffles with the same seed on every rank, so every rank trains on the same
# batches (rank-same-batches); with --no-ddp the model is never wrapped, so each rank trains its own copy apart
# from the others (rank-drift).
import argparse
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-set-epoch", action="store_true")
    parser.add_argument("--no-sampler", action="store_true")
    parser.add_argument("--no-ddp", action="store_true")
    args = parser.parse_args()
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    x = torch.randn(512, 16)
    y = (x[:, :3].sum(1) > 0).long()
    ds = TensorDataset(x, y)
    sampler = DistributedSampler(ds, shuffle=True, seed=0)
    if args.no_sampler:
        loader = DataLoader(ds, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    else:
        loader = DataLoader(ds, batch_size=16, sampler=sampler)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 2))
    if not args.no_ddp:
        model = DDP(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    try:
        for epoch in range(20):
            if not args.no_set_epoch and not args.no_sampler:
                sampler.set_epoch(epoch)
            for xb, yb in loader:
                opt.zero_grad()
                nn.functional.cross_entropy(model(xb), yb).backward()
                opt.step()
            if rank == 0 and os.environ.get("VERBOSE"):
                print(epoch)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
