"""Score the auditor on the hand-labelled corpus (tests/corpus/cases.py): for each case, what fired, the
headline, and whether the labels hold; then the totals README reports.

    python bench/corpus_score.py            # all cases
    python bench/corpus_score.py gru_lm     # some
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from corpus.cases import CASES  # noqa: E402
from corpus.judge import headline_right, judge  # noqa: E402

import auditor  # noqa: E402


def run(name: str):
    case = CASES[name]
    if case.needs and importlib.util.find_spec(case.needs) is None:
        return None
    return auditor.audit(**case.build())


def main(names: list[str]) -> int:
    names = names or list(CASES)
    rows, bad = [], 0
    for name in names:
        started = time.perf_counter()
        report = run(name)
        if report is None:
            print(f"{name:28s} skipped ({CASES[name].needs} not installed)")
            continue
        wrong = judge(CASES[name], report)
        bad += bool(wrong)
        rows.append((name, CASES[name], report, wrong))
        print(f"{name:28s} {time.perf_counter() - started:5.1f}s roots={report.root_causes} "
              f"fired={[f.rule for f in report.findings]} {'OK' if not wrong else 'WRONG: ' + '; '.join(wrong)}"
              + (f" (known miss: {CASES[name].known_miss})" if CASES[name].known_miss else ""),
              flush=True)
    healthy = [r for r in rows if r[1].healthy]
    broken = [r for r in rows if not r[1].healthy]
    headlined = [r for r in rows if r[1].headline]
    print(f"\ncases: {len(rows)} ({len(healthy)} healthy, {len(broken)} broken)")
    print(f"healthy without a warning: {sum(not r[3] for r in healthy)}/{len(healthy)}")
    print(f"broken cases with every label right: {sum(not r[3] for r in broken)}/{len(broken)}")
    print(f"headline right: {sum(headline_right(r[1], r[2]) for r in headlined)}/{len(headlined)}")
    must = sum(len(r[1].must) for r in rows)
    hit = sum(len(r[1].must & {f.rule for f in r[2].findings}) for r in rows)
    print(f"must-fire labels hit: {hit}/{must}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
