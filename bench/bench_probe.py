"""Probe overhead and whole-audit time, measured in one run.

    python bench/bench_probe.py [--repeats 5] [--steps 100] [--device cuda] [--samples a,b] [--stats-every 13]
                                [--amp bf16|fp16]

A sample is a folder of samples/ or any folder holding model.py and loader.py (bench/gpu/resnet50,
bench/gpu/gpt2: the GPU table's models). Under autocast (`--amp`, or model.py's `amp`) the plain loop runs
under the same autocast, fp16 through a GradScaler, as the probe does.

For each sample it times the user's plain training loop (next batch, forward, backward, optimizer step)
against the probe's own training loop (`run_probe`, with its hooks, statistics and their one read-back)
over the same number of steps on the same device, and prints the ratio (the median over repeats of each
repeat's own ratio), for the default statistics schedule and for statistics on every step. Then it times
the whole audit (load, probe, rules, every report format) of each sample, with and without fix
verification, and the training replay alone. Runs are interleaved so drift in machine load hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor.api import audit_setup  # noqa: E402
from auditor.load import load_files  # noqa: E402
from auditor.probe import optim  # noqa: E402
from auditor.probe.amp import MODES  # noqa: E402
from auditor.probe.batches import LossComputer, to_device  # noqa: E402
from auditor.probe.run import DEFAULT_STATS_EVERY, ProbeOptions, run_probe  # noqa: E402
from auditor.probe.state import copy_model  # noqa: E402

SAMPLES = ["makemore_fixed", "makemore_raw", "healthy_mlp_adamw", "healthy_convnet", "healthy_gpt"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_loop(setup, steps: int, device: torch.device, amp: str | None = None) -> float:
    """Seconds per step of the loop a user writes, on a copy of the model."""
    model = copy_model(setup.model).to(device)
    model.train()
    opt, _ = optim.build(setup, model, None)
    losses = LossComputer(setup.loss_fn, setup.training_step, "model.py", "loader.py")
    dtype = MODES.get(amp)
    scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None
    batches, done = iter(setup.train_loader), 0
    _sync(device)
    start = time.perf_counter()
    while done < steps:
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(setup.train_loader)
            continue
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss, _ = losses(model, to_device(batch, device))
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        done += 1
    _sync(device)
    return (time.perf_counter() - start) / steps


def probed_loop(setup, steps: int, device: torch.device, stats_every: int, amp: str | None = None) -> float:
    ev = run_probe(setup, ProbeOptions(steps=steps, device=str(device), stats_every=stats_every, amp=amp))
    return ev.probe.loop_seconds / ev.probe.steps_run


def _files(sample: str) -> tuple[Path, Path]:
    folder = Path(sample) if Path(sample).is_dir() else ROOT / "samples" / sample
    return folder / "model.py", folder / "loader.py"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samples", default=",".join(SAMPLES))
    parser.add_argument("--stats-every", type=int, default=DEFAULT_STATS_EVERY,
                        help="the probe's statistics interval for the 'probed' column")
    parser.add_argument("--amp", choices=["bf16", "fp16"], help="autocast for both loops [default: model.py's]")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__} on {name}; {args.steps} steps, median of {args.repeats} repeats")
    print(f"{'sample':<20}{'plain ms/step':>14}{'probed':>9}{'ratio':>7}{'every step':>12}{'ratio':>7}"
          f"{'audit s':>9}{'no verify':>11}{'replay only':>13}")
    for sample in args.samples.split(","):
        setup = load_files(*_files(sample))
        setup.model.to(device)
        amp = args.amp or setup.amp
        plain_loop(setup, 10, device, amp), probed_loop(setup, 10, device, 1, amp)  # warm-up
        plain, probed, every = [], [], []
        for _ in range(args.repeats):
            plain.append(plain_loop(setup, args.steps, device, amp))
            probed.append(probed_loop(setup, args.steps, device, args.stats_every, amp))
            every.append(probed_loop(setup, args.steps, device, 1, amp))
        p, q, e = (statistics.median(x) for x in (plain, probed, every))
        # The ratio is the median of each repeat's own ratio: plain and probed runs of a repeat sit side by
        # side, so a slow spell of the machine cancels out instead of landing on one side.
        ratio = statistics.median(b / a for a, b in zip(plain, probed, strict=True))
        ratio_every = statistics.median(b / a for a, b in zip(plain, every, strict=True))
        whole = [_whole_audit(sample, device, verify, amp) for verify in (True, False)]
        replay = _replay_only(sample, device, amp)
        label = Path(sample).name + (f" ({amp})" if amp else "")
        print(f"{label:<20}{p * 1e3:>14.3f}{q * 1e3:>9.3f}{ratio:>7.2f}{e * 1e3:>12.3f}{ratio_every:>7.2f}"
              f"{whole[0]:>9.2f}{whole[1]:>11.2f}{replay:>13.2f}")


def _whole_audit(sample: str, device: torch.device, verify: bool, amp: str | None = None) -> float:
    """Load, probe, experiments, rules, fix verification (unless off) and all four report formats."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        setup = load_files(*_files(sample))
        setup.model.to(device)
        audit_setup(setup, verify_fixes=verify, amp=amp).write(out)
        return time.perf_counter() - start


def _replay_only(sample: str, device: torch.device, amp: str | None = None) -> float:
    """The foundation's probe alone: the training replay, without the experiments of checks.py."""
    setup = load_files(*_files(sample))
    setup.model.to(device)
    start = time.perf_counter()
    run_probe(setup, ProbeOptions(device=str(device), checks=False, amp=amp))
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
