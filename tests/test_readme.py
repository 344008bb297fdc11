"""README's Python API example, run as written in a fresh process, on whatever torch the install picked."""

import json
import subprocess
import sys

from readme_blocks import api_example, two_commands

from auditor.report import schema


def test_readme_api_example_runs_as_written(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(api_example())
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    assert "clean" in done.stdout or "warnings" in done.stdout, done.stdout
    report = json.loads((tmp_path / "audit-report" / "report.json").read_text())
    assert schema.errors(report) == []  # written by another process: the conftest hook does not see it
    assert report["probe"]["optimizer"].startswith("AdamW(")
    assert report["probe"]["steps_run"] == 100
    assert any("CosineAnnealingLR" in n for n in report["probe"]["notes"])


def test_readme_two_commands_are_what_ci_runs():
    install, test = two_commands()
    assert "pip install -e '.[dev]'" in install and install.startswith("python3 -m venv .venv")
    assert test == "python -m pytest -q"
