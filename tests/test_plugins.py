"""Rules of a team's own, loaded beside the built-ins: installed (entry-point group `auditor.rules`) and by
path (`[tool.auditor] plugins`); listed, explained, run, and refused when an id clashes with a built-in."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLES

from auditor.engine import load_rules
from auditor.errors import AuditError
from auditor.report import schema

PLUGIN = SAMPLES / "plugin_rules"


def _audit(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "auditor", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=300)


def _pyproject(folder: Path, plugins: list[str], extra: str = "") -> None:
    quoted = ", ".join(f'"{p}"' for p in plugins)
    folder.joinpath("pyproject.toml").write_text(f"[tool.auditor]\nplugins = [{quoted}]\n{extra}")


def test_by_path_listed_explained_and_run(tmp_path):
    _pyproject(tmp_path, [str(PLUGIN / "team_rules")],
               "[tool.auditor.rules.team-parameter-budget]\nmax_millions = 0.0005\n")
    listed = _audit("rules", cwd=tmp_path)
    assert listed.returncode == 0 and "team-parameter-budget" in listed.stdout and "[plugin:" in listed.stdout
    assert "init-loss" in listed.stdout  # beside the built-ins, not instead of them
    explained = _audit("explain", "team-parameter-budget", cwd=tmp_path)
    assert explained.returncode == 0 and "max_millions = 100.0" in explained.stdout
    # A job folder under the pyproject.toml: its settings (and plugins) apply to the audit of its model.
    work = tmp_path / "job"
    work.mkdir()
    (work / "model.py").write_text(
        "import torch\nfrom torch import nn\n\ntorch.manual_seed(0)\n"
        "model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 4))\n"
        "train_loader = [(torch.randn(32, 8), torch.randint(0, 4, (32,))) for _ in range(10)]\n")
    run = _audit(work / "model.py", "--steps", "10", "--format", "json", "--out",
                 tmp_path / "out", "--fail-on", "warning", "--no-verify-fixes", cwd=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "team-parameter-budget" in run.stdout and "over the team's parameter budget" in run.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert schema.errors(report) == [] and report["findings"][0]["rule"] == "team-parameter-budget"


def test_installed_through_the_entry_point(tmp_path):
    target = tmp_path / "site"
    # pip's own build isolation fetches the setuptools the plugin asks for: a venv's bundled setuptools may
    # be too old to build a wheel without the `wheel` package (setuptools < 70.1).
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                          str(PLUGIN)], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    listed = _audit("rules", cwd=tmp_path, env={"PYTHONPATH": str(target)})
    assert listed.returncode == 0 and "team-parameter-budget" in listed.stdout, listed.stderr
    assert "[plugin: team_rules.parameter_budget]" in listed.stdout


def test_a_clash_with_a_built_in_is_a_clear_error(tmp_path):
    clash = tmp_path / "clash.py"
    clash.write_text("from auditor.engine import Rule\n\nclass Mine(Rule):\n    id = 'init-loss'\n\nRULE = Mine()\n")
    with pytest.raises(AuditError, match="clashes with a built-in rule"):
        load_rules([str(clash)])
    _pyproject(tmp_path, [str(clash)])
    result = _audit("rules", cwd=tmp_path)
    assert result.returncode == 2 and "clashes with a built-in" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("spec, says", [("no_such_module_xyz", "cannot be imported"),
                                        ("/nonexistent/rules.py", "no such file"),
                                        ("json", "defines no rule")])
def test_bad_plugins_are_named(spec, says):
    with pytest.raises(AuditError, match=says):
        load_rules([spec])
