"""The model-zoo sweep: every architecture in bench/zoo_models.py, healthy, at several seeds. A healthy
recipe must get no warning and no error; the table says what fired where.

    python bench/zoo.py                                  # one model per family, seed 0
    python bench/zoo.py --seeds 0,1,2 --all              # every torchvision model, every timm and HF entry
    python bench/zoo.py --only 'resnet|gpt2' --json out.json
    python bench/zoo.py --all --seeds 0,1,2 --sources torchvision --device cuda --jobs 12   # on a GPU

Each (model, seed) runs in a fresh process with a time limit, so one architecture that is slow or breaks
on a CPU cannot stop the sweep; the table marks it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))


def audit_one(name: str, seed: int, steps: int, device: str = "cpu") -> dict:
    """Build the entry from the seed, audit it on `device`, and summarise the report."""
    import torch
    from zoo_models import entries

    import auditor

    entry = next(e for e in entries() if e.name == name)
    torch.manual_seed(seed)
    kwargs = entry.build()
    kwargs["model"].to(device)  # the probe runs where the model lives and moves each batch there
    n_params = sum(p.numel() for p in kwargs["model"].parameters())
    started = time.perf_counter()
    report = auditor.audit(**kwargs, seed=seed, steps=steps)
    ev = report.evidence
    return {"model": name, "source": entry.source, "device": device, "family": entry.family, "seed": seed,
            "recipe": entry.recipe, "params": n_params, "seconds": round(time.perf_counter() - started, 1),
            "findings": [[f.rule, f.severity, f.title] for f in report.findings],
            "roots": report.root_causes,
            # Enough to judge a warning without re-running the model: what it measured, and what its fix did.
            "details": [{"rule": f.rule, "diagnosis": f.diagnosis, "verified": f.verified or None,
                         "explained_by": list(f.explained_by)} for f in report.findings if f.severity != "info"],
            "loss": [float(ev.loss[0]), float(ev.loss[-1])] if ev.loss.size else None,
            "expected_initial_loss": ev.probe.expected_initial_loss}


def run(name: str, seed: int, steps: int, timeout: float, device: str = "cpu") -> dict:
    cmd = [sys.executable, __file__, "--one", name, "--seed", str(seed), "--steps", str(steps), "--device", device]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"model": name, "seed": seed, "error": f"over {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"model": name, "seed": seed, "error": last[:200]}
    return json.loads(lines[-1])




def verdict(r: dict) -> str:
    """clean: no warning or error. init: a loss at initialisation far above ln C is the one root cause the report
    names, and every other warning is explained by it (a mechanism of auditor/causes.py, or its verified fix
    removed the finding on a copy): true of these inits at 10 classes (torchvision's EfficientNet and MNASNet heads
    are drawn at ±1/√classes, meant for 1000), measured here as the first loss over ln C. alarm: anything else."""
    loud = [f for f in r["findings"] if f[1] != "info"]
    if not loud:
        return "clean"
    loud_roots = [root for root in r.get("roots") or [] if root in {f[0] for f in loud}]
    return "init" if loud_roots == ["init-loss"] else "alarm"


def table(results: list[dict]) -> str:
    rows = {}
    for r in results:
        rows.setdefault(r["model"], []).append(r)
    out = ["| model | source | params | recipe | seeds clean | first loss / ln C | warnings and errors |",
           "|---|---|---|---|---|---|---|"]
    for name, rs in rows.items():
        ok = [r for r in rs if "error" not in r]
        verdicts = [verdict(r) for r in ok]
        clean = f"{verdicts.count('clean')}/{len(rs)}"
        if verdicts.count("init"):
            clean += f" (+{verdicts.count('init')} init-loss only)"
        fired = sorted({f"{f[0]} ({f[1]})" for r in ok for f in r["findings"] if f[1] != "info"})
        errors = sorted({r["error"] for r in rs if "error" in r})
        first = ok[0] if ok else {}
        params = f"{first['params'] / 1e6:.1f}M" if first else "-"
        ratios = [r["loss"][0] / r["expected_initial_loss"] for r in ok
                  if r.get("loss") and r.get("expected_initial_loss")]
        ratio = f"{max(ratios):.1f}x" if ratios else "-"
        what = ", ".join(fired) or "-"
        if errors:
            what += " / did not run: " + "; ".join(errors)
        out.append(f"| {name} | {first.get('source', '-')} | {params} | {first.get('recipe', '-')} | "
                   f"{clean} | {ratio} | {what} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--all", action="store_true", help="every torchvision model, not one per family")
    ap.add_argument("--heavy", action="store_true", help="include models of hundreds of millions of parameters")
    ap.add_argument("--only", help="a regular expression on the model names")
    ap.add_argument("--sources", default="torchvision,timm,hf")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--device", default="cpu", help="where each model is audited (cuda: the GPU sweep)")
    ap.add_argument("--jobs", type=int, default=1, help="audits at a time, each its own process (on a GPU they "
                    "share the device: a run's time is then not its own)")
    ap.add_argument("--json", help="write the results here as they come")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="no run: the table of sweeps run in parts (their "
                    "--json files), a later file's run of a model and seed replacing an earlier one's")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(audit_one(args.one, args.seed, args.steps, args.device)))
        return 0
    if args.merge:
        merged = {}
        for path in args.merge:
            for r in json.loads(Path(path).read_text()):
                merged[(r["model"], r["seed"])] = r
        return summary(sorted(merged.values(), key=lambda r: (r["model"], r["seed"])))

    from zoo_models import entries, representatives

    chosen = entries(tuple(args.sources.split(",")))
    if not args.all:
        chosen = representatives(chosen)
    chosen = [e for e in chosen if (args.heavy or not e.heavy) and (not args.only or re.search(args.only, e.name))]
    # Seed by seed: a sweep stopped at a deadline has covered every model once before any twice.
    runs = [(e.name, int(seed)) for seed in args.seeds.split(",") for e in chosen]
    results = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run, name, seed, args.steps, args.timeout, args.device) for name, seed in runs]
        for future in as_completed(futures):  # each written as it ends: a sweep stopped early keeps what it did
            r = future.result()
            results.append(r)
            fired = r.get("error") or [f[0] for f in r["findings"] if f[1] != "info"] or "clean"
            print(f"{r['model']:28s} seed {r['seed']} {r.get('seconds', '-'):>6}s {fired}", flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1))
    results.sort(key=lambda r: runs.index((r["model"], r["seed"])))
    return summary(results)


def summary(results: list[dict]) -> int:
    print()
    print(table(results))
    ok = [r for r in results if "error" not in r]
    verdicts = [verdict(r) for r in ok]
    print(f"\nclean: {verdicts.count('clean')}/{len(ok)} runs; init-loss only (true at 10 classes): "
          f"{verdicts.count('init')}; other warnings: {verdicts.count('alarm')} ({len(results) - len(ok)} did not run)")
    for r in ok:
        if verdict(r) == "alarm":
            print(f"  {r['model']} seed {r['seed']}: {', '.join(f[0] for f in r['findings'] if f[1] != 'info')}")
    return 0 if "alarm" not in verdicts and len(ok) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
