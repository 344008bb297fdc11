"""The hand-labelled corpus (tests/corpus/cases.py): models written unlike the samples. Each must get the
verdict a practitioner would give: healthy ones no warning, broken ones their rules and their headline."""

import functools
import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from corpus.cases import CASES  # noqa: E402
from corpus_score import judge  # noqa: E402

import auditor  # noqa: E402


@functools.cache
def _audit(name):
    return auditor.audit(**CASES[name].build())


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=c.known_miss))
                                  if c.known_miss else n for n, c in CASES.items()])
def test_corpus_case(name):
    case = CASES[name]
    if case.needs and importlib.util.find_spec(case.needs) is None:
        pytest.skip(f"{case.needs} is not installed")
    report = _audit(name)
    assert not judge(case, report), judge(case, report)


def test_corpus_is_large_and_mixed():
    assert len(CASES) >= 25
    assert sum(c.healthy for c in CASES.values()) >= 10 and sum(bool(c.headline) for c in CASES.values()) >= 10


def test_corpus_verdicts_do_not_flip_between_runs():
    # Same seed, same objects: the same verdict. Two cases whose evidence sits nearest a threshold.
    for name in ("own_loss_object", "cnn_lr_too_high"):
        again = auditor.audit(**CASES[name].build())
        assert again.root_causes == _audit(name).root_causes
        assert [f.rule for f in again.findings] == [f.rule for f in _audit(name).findings]
