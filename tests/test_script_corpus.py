"""A fast subset of the script corpus (tests/corpus/scripts): healthy scripts in other people's styles stay
clean, and loop bugs written unlike the samples are found and headlined. bench/script_corpus.py runs them all."""

import importlib.util

import pytest
from corpus.scripts.cases import CASES
from corpus.scripts.judge import judge

from auditor.api import audit_script
from auditor.probe.script import Script

FAST = ["raw_while_loop", "gan_two_models", "gan_two_models_rebuild-g", "lightning_fit", "eval_left_on",
        "accumulate_forgot_zero", "rebuilt_for_finetune", "vae_example"]


@pytest.mark.parametrize("name", FAST)
def test_script_case(name):
    case = CASES[name]
    if case.needs and importlib.util.find_spec(case.needs) is None:
        pytest.skip(f"{case.needs} not installed")
    report = audit_script(Script(str(case.path), list(case.args)), steps=100)
    reports = [r.to_dict() for r in report.players]
    assert not judge(case, reports), (case.style, judge(case, reports))


def test_corpus_is_wide_enough():
    assert len(CASES) >= 15
    assert sum(c.healthy for c in CASES.values()) >= 8 and sum(not c.healthy for c in CASES.values()) >= 7
