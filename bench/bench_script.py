"""What `audit run` costs per step of a user's script: the same script run plainly and under `audit run`.

    OMP_NUM_THREADS=1 python bench/bench_script.py [--repeats 5]

Each script (bench/scripts/) times its own training loop and writes it out in a `finally:` block, so the
audited run's time is its loop's (the observer's hooks and statistics included, the read-back and reports
not: those are per audit, not per step). The per-step cost is the slope of loop time against steps between
the two step counts, for both runs; the ratio of the slopes is the overhead of an instrumented step. Runs are
interleaved so that drift in machine load hits both alike; each figure is the median over repeats.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Each with the two step counts its slope is taken between: a sub-millisecond step needs many steps for its
# slope to rise above the machine's noise.
SCRIPTS = {"makemore MLP (SGD, BatchNorm, tanh)": ("timed_mlp.py", (200, 1000)),
           "small CNN (AdamW, BatchNorm, dropout)": ("timed_cnn.py", (50, 250))}


def _loop_seconds(argv: list[str]) -> float:
    with tempfile.NamedTemporaryFile(suffix=".txt", delete=False) as f:
        path = f.name
    env = dict(os.environ, BENCH_TIME_FILE=path)
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    # The first line is the observed run's: `audit run` then re-runs the script (the LR range test), which
    # appends its own.
    seconds = float(Path(path).read_text().splitlines()[0])
    os.unlink(path)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print("| script | plain ms/step | audit run ms/step | ratio (median) | ratio (range) |\n|---|---|---|---|---|")
    for label, (script, (low, high)) in SCRIPTS.items():
        extra: list[str] = []
        path = str(HERE / "scripts" / script)
        ratios, plains, audits = [], [], []
        for _ in range(args.repeats):
            t = {}
            for n in (low, high):
                t["plain", n] = _loop_seconds([sys.executable, path, str(n), *extra])
                t["audit", n] = _loop_seconds([sys.executable, "-m", "auditor", "run", "-q", "--format", "json",
                                               "--no-verify-fixes", "--out", tempfile.mkdtemp(), "--steps", str(n),
                                               path, str(n + 10), *extra])
            plain = (t["plain", high] - t["plain", low]) / (high - low)
            audit = (t["audit", high] - t["audit", low]) / (high - low)
            plains.append(plain * 1e3)
            audits.append(audit * 1e3)
            ratios.append(audit / plain)
        print(f"| {label} | {statistics.median(plains):.3f} | {statistics.median(audits):.3f} | "
              f"{statistics.median(ratios):.2f}x | {min(ratios):.2f}-{max(ratios):.2f}x |", flush=True)


if __name__ == "__main__":
    main()
