"""Deep ResNets at the zoo's probe: does the loss fall, and what makes it? Plain training, no auditor.

The zoo's setting (bench/zoo_models.py: 32-pixel synthetic images, batch 16, SGD with momentum 0.9 at 0.1 per 256,
wd 1e-4, 100 steps) with one change per variant:
    base  torchvision's default init (each block's last BatchNorm gain at 1)
    zero  zero_init_residual=True (that gain at 0: each block starts as the identity; Goyal et al. 2017)
    low   a tenth of the rate
    b32   batches of 32 (the rate scaled with them)
    b64, b128  batches of 64 or 128, the rate scaled with them and the data too (2048 or 4096 samples: the same
          three passes over it as the zoo's 512 at 16)
    s64   64-pixel inputs (the last stage's BatchNorm over 2x2 positions instead of 1x1)
    warm  a linear warm-up over the first 20 steps

    OMP_NUM_THREADS=1 python bench/residual_init.py --models resnet152 --seeds 0,1,2,3,4,5 --variants base,zero,low
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torchvision
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoo_models import BATCH, images  # noqa: E402

VARIANTS = {"base": {}, "zero": {"zero": True}, "low": {"lr_per_256": 0.01}, "b32": {"batch": 32},
            "b64": {"batch": 64, "samples": 2048}, "b128": {"batch": 128, "samples": 4096},
            "s64": {"size": 64}, "warm": {"warm": 20}}


def train(name: str, seed: int, zero: bool = False, batch: int = BATCH, size: int = 32, steps: int = 100,
          lr_per_256: float = 0.1, warm: int = 0, samples: int = 512) -> dict:
    torch.manual_seed(seed)
    model = torchvision.models.get_model(name, weights=None, num_classes=10, zero_init_residual=zero)
    torch.manual_seed(seed)
    lr = lr_per_256 * batch / 256
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    data = images(size, n=samples).dataset
    loader = DataLoader(data, batch_size=batch, shuffle=True, drop_last=True)
    losses: list[float] = []
    while len(losses) < steps:
        for x, y in loader:
            if len(losses) == steps:
                break
            if warm:
                for group in opt.param_groups:
                    group["lr"] = lr * min(1.0, (len(losses) + 1) / warm)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    t, k = torch.tensor(losses), steps // 5
    return {"first": round(t[:k].median().item(), 3), "last": round(t[-k:].median().item(), 3),
            "max": round(t.max().item(), 2)}


def _span(rows: list[dict], key: str) -> str:
    return f"{min(r[key] for r in rows):.3g}-{max(r[key] for r in rows):.3g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet152")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default="base,zero")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    rows = []
    for name in args.models.split(","):
        for variant in args.variants.split(","):
            for seed in map(int, args.seeds.split(",")):
                started = time.perf_counter()
                row = {"model": name, "variant": variant, "seed": seed, **train(name, seed, **VARIANTS[variant]),
                       "seconds": round(time.perf_counter() - started)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    print("\n| model | variant | seeds | median loss, first fifth | last fifth | highest | ended below ln 10 |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        for variant in args.variants.split(","):
            rs = [r for r in rows if r["model"] == name and r["variant"] == variant]
            print(f"| {name} | {variant} | {len(rs)} | {_span(rs, 'first')} | {_span(rs, 'last')} | "
                  f"{_span(rs, 'max')} | "
                  f"{sum(r['last'] < 2.3026 for r in rs)}/{len(rs)} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
