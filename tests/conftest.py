import functools
from pathlib import Path

import pytest

from auditor.api import audit_setup
from auditor.load import load_files

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
