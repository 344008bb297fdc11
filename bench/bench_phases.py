"""Where the wall time of one audit goes: imports, loading, replay, experiments, fix verification, each report
format; and the whole command as a user runs it.

    python bench/bench_phases.py                                   # README's first command, the makemore sample
    python bench/bench_phases.py --sample healthy_resnet --repeats 3

Each repeat runs in a fresh interpreter (imports are a cost users pay on every run). The phases are read from
the progress display's own phase changes, so they are the phases the audit reports; the formats are written
one at a time from the finished report, the PDF from the HTML as `Report.write` makes it. "whole command" is
`audit MODEL --data LOADER` timed from outside, all four formats, fixes verified.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
marks = {}
import torch
marks["import torch"] = time.perf_counter()
import auditor.api, auditor.load
from auditor.progress import Progress
marks["import auditor"] = time.perf_counter()
model_file, data_file, out = sys.argv[1:4]
setup = auditor.load.load_files(model_file, data_file)
marks["load model.py and loader.py"] = time.perf_counter()

class Phases(Progress):
    def phase(self, name, total=None):
        marks[name] = time.perf_counter()  # the time the phase started; made into spans below

SETUP = "set-up (model copy, optimizer: torch.optim loads torch._dynamo on first use)"
phase_start = marks[SETUP] = time.perf_counter()
report = auditor.api.audit_setup(setup, progress=Phases())
end = time.perf_counter()
order = sorted(((t, n) for n, t in marks.items() if t >= phase_start), key=lambda x: x[0])
spans = {}
for (t, name), nxt in zip(order, [t for t, _ in order[1:]] + [end]):
    spans[name] = nxt - t
spans = {"imports (torch)": marks["import torch"] - t0,
         "imports (auditor)": marks["import auditor"] - marks["import torch"],
         "load model.py and loader.py": marks["load model.py and loader.py"] - marks["import auditor"],
         **{k: v for k, v in spans.items()}}
from pathlib import Path
out = Path(out)
t = time.perf_counter(); report.write_json(out / "report.json"); spans["json"] = time.perf_counter() - t
t = time.perf_counter(); report.write_markdown(out / "report.md"); spans["md"] = time.perf_counter() - t
t = time.perf_counter(); html = report.to_html(); (out / "report.html").write_text(html)
spans["html (figures drawn)"] = time.perf_counter() - t
t = time.perf_counter(); report.write_pdf(out / "report.pdf", html)
spans["pdf (from the html)"] = time.perf_counter() - t
spans["probe loop alone (ProbeInfo.loop_seconds)"] = report.probe.loop_seconds
print("PHASES " + json.dumps(spans))
"""


PLAIN = r"""
import sys
sys.path.insert(0, sys.argv[3])
import torch, auditor.load
from bench_probe import plain_loop
setup = auditor.load.load_files(sys.argv[1], sys.argv[2])
plain_loop(setup, 100, torch.device("cpu"))
"""


def plain(sample: str) -> float:
    """The same files trained for the probe's 100 steps by a plain loop, timed from outside like the audit: what
    the user's script costs anyway (interpreter, torch, their data, torch.optim's first use)."""
    model, data = ROOT / "samples" / sample / "model.py", ROOT / "samples" / sample / "loader.py"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PLAIN, str(model), str(data), str(ROOT / "bench")],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        sys.exit(f"the plain run failed: {done.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - started


def one(sample: str) -> tuple[dict, float]:
    model, data = ROOT / "samples" / sample / "model.py", ROOT / "samples" / sample / "loader.py"
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-c", CHILD, str(model), str(data), tmp], capture_output=True,
                              text=True, cwd=ROOT)
        line = next((x for x in done.stdout.splitlines() if x.startswith("PHASES ")), None)
        if line is None:
            sys.exit(f"the phased run failed: {done.stderr.strip().splitlines()[-1:]}")
        spans = json.loads(line[len("PHASES "):])
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "auditor", str(model), "--data", str(data), "--out", tmp, "-q"],
                              capture_output=True, text=True, cwd=ROOT)
        whole = time.perf_counter() - started
        if done.returncode not in (0, 1):
            sys.exit(f"audit failed: {done.stderr.strip()}")
    return spans, whole


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", default="makemore_raw")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    runs = [one(args.sample) for _ in range(args.repeats)]
    plains = [plain(args.sample) for _ in range(args.repeats)]
    names = list(runs[0][0])
    print(f"{args.sample}, {args.repeats} runs, {os.cpu_count()} CPUs, median seconds (min-max):\n")
    print("| phase | seconds |\n|---|---|")
    for name in names:
        values = [r[0].get(name, 0.0) for r in runs]
        print(f"| {name} | {statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f}) |")
    wholes = [w for _, w in runs]
    print(f"| **whole command** (`audit` with all four formats) | **{statistics.median(wholes):.2f}** "
          f"({min(wholes):.2f}-{max(wholes):.2f}) |")
    print(f"| plain training of the same files, 100 steps, from a fresh interpreter | {statistics.median(plains):.2f} "
          f"({min(plains):.2f}-{max(plains):.2f}) |")
    print(f"| **what the audit adds** (whole command - plain training) | "
          f"**{statistics.median(wholes) - statistics.median(plains):.2f}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
