import functools
from pathlib import Path

import pytest

from auditor.api import audit_setup
from auditor.load import load_files
from auditor.report import Report
from auditor.report import schema as report_schema

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


@functools.cache
def _audit(name: str, steps: int, overrides: tuple = ()):
    setup = load_files(SAMPLES / name / "model.py", SAMPLES / name / "loader.py")
    thresholds = {}
    for rule, key, value in overrides:
        thresholds.setdefault(rule, {})[key] = value
    return audit_setup(setup, steps=steps, thresholds=thresholds)


@pytest.fixture
def audit_sample():
    def run(name, steps=100, overrides=()):
        return _audit(name, steps, tuple(overrides))
    return run


@pytest.fixture
def write(tmp_path):
    """Write a user file into a fresh folder and return its path."""
    def _write(name, text):
        path = tmp_path / name
        path.write_text(text)
        return path
    return _write


_made: list = []
_init = Report.__init__


def _recording_init(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    _made.append(self)


Report.__init__ = _recording_init


@pytest.fixture(autouse=True)
def every_report_matches_the_schema():
    """Each Report a test makes (API, CLI in-process, fix verification's re-probes aside) must serialise to
    a report.json that report.schema.json accepts."""
    start = len(_made)
    yield
    made, _made[start:] = _made[start:], []
    for report in made:
        if getattr(report, "findings", None) is None:
            continue
        problems = report_schema.errors(report.to_dict())
        assert not problems, f"report.json departs from report.schema.json: {problems[:3]}"
