"""Score `audit run` on the corpus of training scripts (tests/corpus/scripts/cases.py): each script audited
from the command line as a user would (under torchrun where the case says so), its report judged against
the labels; then the totals README reports.

    OMP_NUM_THREADS=1 python bench/script_corpus.py            # every case
    OMP_NUM_THREADS=1 python bench/script_corpus.py gpt_accum  # some
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from corpus.scripts.cases import CASES  # noqa: E402
from corpus.scripts.judge import judge  # noqa: E402


def audit(case, out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "auditor", "run", "-q", "--format", "json", "--out", str(out), str(case.path),
           *case.args]
    if case.ranks:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(case.ranks),
               "-m", *cmd[2:]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200)


def main(names: list[str]) -> int:
    names = names or list(CASES)
    right = {"healthy": [0, 0], "broken": [0, 0]}
    for name in names:
        case = CASES[name]
        if case.needs and importlib.util.find_spec(case.needs) is None:
            print(f"{name:34s} skipped ({case.needs} not installed)")
            continue
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            done = audit(case, Path(tmp))
            # One report per optimizer the script steps: the first's in the folder, a GAN's others beside it.
            paths = sorted(Path(tmp).rglob("report.json"), key=lambda p: len(p.parts))
            reports = [json.loads(p.read_text()) for p in paths]
        if not reports:
            wrong = [f"no report (exit {done.returncode}): {(done.stderr.strip().splitlines() or [''])[-1]}"]
            roots, loud = [], []
        else:
            wrong = judge(case, reports)
            roots = [r["root_causes"] for r in reports] if len(reports) > 1 else reports[0]["root_causes"]
            loud = [f["rule"] for r in reports for f in r["findings"] if f["severity"] != "info"]
        kind = "healthy" if case.healthy else "broken"
        right[kind][0] += not wrong
        right[kind][1] += 1
        print(f"{name:34s} {time.perf_counter() - started:5.1f}s roots={roots} fired={loud} "
              f"{'OK' if not wrong else 'WRONG: ' + '; '.join(wrong)}", flush=True)
    print(f"\nhealthy scripts clean: {right['healthy'][0]}/{right['healthy'][1]}; "
          f"broken scripts found with the right headline: {right['broken'][0]}/{right['broken'][1]}")
    return 0 if all(r[0] == r[1] for r in right.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
