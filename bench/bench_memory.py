"""Peak memory of an audit against the plain training loop of the same model, measured in one run.

    python bench/bench_memory.py [--model bench/memory_model/model.py --data bench/memory_model/loader.py]
                                 [--steps 100] [--device cuda]

Each measurement runs in a fresh interpreter of its own, so that what one leaves behind cannot inflate the
next: the plain loop (next batch, forward, backward, AdamW step, the same number of steps), then the whole
audit (`audit MODEL --data LOADER`, every report format) with copies (--copy) and in place (--in-place). On the
CPU the figure is the process's peak resident set (interpreter and imports included, as `/usr/bin/time -v`
reports it); on CUDA it is torch.cuda.max_memory_allocated. Prints each peak and its ratio to the plain loop.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


def _peak(device: str) -> float:
    """MiB: CUDA's peak allocation, or this process's peak RSS (ru_maxrss is in KiB on Linux)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_plain(model_file: str, data_file: str, steps: int, device: str) -> None:
    sys.path.insert(0, str(ROOT))
    import torch

    from auditor.load import load_files
    from auditor.probe import optim
    from auditor.probe.batches import LossComputer, to_device

    setup = load_files(model_file, data_file)
    model = setup.model.to(device)
    model.train()
    opt, _ = optim.build(setup, model, None)
    losses = LossComputer(setup.loss_fn, setup.training_step, model_file, data_file)
    done = 0
    while done < steps:
        for batch in setup.train_loader:
            opt.zero_grad(set_to_none=True)
            loss, _ = losses(model, to_device(batch, torch.device(device)))
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    print(json.dumps({"peak_mib": _peak(device)}))


def child_audit(model_file: str, data_file: str, steps: int, device: str, mode: str) -> None:
    sys.path.insert(0, str(ROOT))
    from auditor.cli import cli

    with tempfile.TemporaryDirectory() as out:
        args = [model_file, "--data", data_file, "--steps", str(steps), "--out", out, "-q", f"--{mode}"]
        if device != "cpu":
            args += ["--device", device]
        try:
            cli(["run", *args], standalone_mode=False)
        except SystemExit:
            pass
    print(json.dumps({"peak_mib": _peak(device)}))


def _measure(kind: str, args) -> float:
    cmd = [sys.executable, __file__, "--child", kind, "--model", args.model, "--data", args.data,
           "--steps", str(args.steps), "--device", args.device]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"{kind} failed:\n{out.stderr[-2000:]}")
    return json.loads(lines[-1])["peak_mib"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(HERE / "memory_model" / "model.py"))
    parser.add_argument("--data", default=str(HERE / "memory_model" / "loader.py"))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", choices=["plain", "copy", "in-place"])
    args = parser.parse_args()
    if args.child == "plain":
        return child_plain(args.model, args.data, args.steps, args.device)
    if args.child:
        return child_audit(args.model, args.data, args.steps, args.device, args.child)
    what = "peak RSS" if args.device == "cpu" else "max_memory_allocated"
    plain = _measure("plain", args)
    print(f"{Path(args.model).parent.name}, {args.steps} steps on {args.device} ({what}):")
    print(f"  plain training loop  {plain:8.0f} MiB")
    for mode in ("copy", "in-place"):
        peak = _measure(mode, args)
        print(f"  audit --{mode:<9}   {peak:8.0f} MiB  {peak / plain:.2f}x")


if __name__ == "__main__":
    main()
