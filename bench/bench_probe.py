"""Probe overhead and whole-audit time, measured in one run.

    python bench/bench_probe.py [--repeats 5]

For each sample it times plain training steps (forward, backward, optimizer step: what the user's loop
does) and probed steps (the same, with the auditor's hooks and statistics) on the same model, batches and
device, and prints the ratio. Then it times the whole audit (load, probe, rules, reports) of each sample.
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
from auditor.probe.activations import ActivationTracer  # noqa: E402
from auditor.probe.batches import LossComputer  # noqa: E402
from auditor.probe.devicelog import DeviceLog  # noqa: E402
from auditor.probe.params import ParamTracker  # noqa: E402
from auditor.probe.state import copy_model  # noqa: E402

SAMPLES = ["makemore_fixed", "makemore_raw", "healthy_mlp_adamw", "healthy_convnet", "healthy_gpt"]


def _steps(setup, n, probed):
    model = copy_model(setup.model)
    opt = setup.make_optimizer(model.parameters()) if setup.make_optimizer else torch.optim.AdamW(
        model.parameters(), lr=1e-3)
    losses = LossComputer(setup.loss_fn, setup.training_step, "model.py", "loader.py")
    batches = [b for _, b in zip(range(n), setup.train_loader, strict=False)]
    log = DeviceLog()
    tracer = ActivationTracer(model, log, {0}) if probed else None
    params = ParamTracker([(k, p) for k, p in model.named_parameters() if p.requires_grad], log) if probed else None
    sync = torch.cuda.synchronize if next(model.parameters()).is_cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    for step, batch in enumerate(batches):
        opt.zero_grad(set_to_none=True)
        if probed:
            tracer.step = step
            with tracer:
                loss, _ = losses(model, batch)
            log.put("loss", loss.detach(), step)
        else:
            loss, _ = losses(model, batch)
        loss.backward()
        if probed:
            params.after_backward(step)
        opt.step()
        if probed:
            params.after_step(step)
    if probed:
        log.read_back()  # the one transfer belongs to the probe's cost
        tracer.remove_hooks()
    sync()
    return (time.perf_counter() - start) / len(batches)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps x {args.repeats} repeats"
          " (median)")
    print(f"{'sample':<22}{'plain ms/step':>14}{'probed ms/step':>16}{'ratio':>8}{'whole audit s':>15}")
    for name in SAMPLES:
        setup = load_files(ROOT / "samples" / name / "model.py", ROOT / "samples" / name / "loader.py")
        _steps(setup, 10, False), _steps(setup, 10, True)  # warm-up
        plain, probed = [], []
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits both alike
            plain.append(_steps(setup, args.steps, False))
            probed.append(_steps(setup, args.steps, True))
        p, q = statistics.median(plain), statistics.median(probed)
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            setup = load_files(ROOT / "samples" / name / "model.py", ROOT / "samples" / name / "loader.py")
            audit_setup(setup).write(out)
            whole = time.perf_counter() - start
        print(f"{name:<22}{p * 1e3:>14.3f}{q * 1e3:>16.3f}{q / p:>8.2f}{whole:>15.2f}")


if __name__ == "__main__":
    main()
