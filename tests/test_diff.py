"""`audit diff` and `audit --baseline`: what changed between two audits, and the exit code a CI gate reads."""

import copy
import json

import pytest
from click.testing import CliRunner
from conftest import SAMPLES

from auditor import diff as differ
from auditor.cli import cli


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def raw_and_fixed(audit_sample):
    """The makemore MLP with the lecture's bad init (base) and with its fixes (head), as report.json data."""
    as_json = lambda r: json.loads(json.dumps(r.to_dict()))  # noqa: E731
    return as_json(audit_sample("makemore_raw")), as_json(audit_sample("makemore_fixed"))


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.mkdir()
    (path / "report.json").write_text(json.dumps(data))
    return path


def test_a_fix_shows_as_fixed_findings_and_better_metrics(raw_and_fixed):
    base, head = raw_and_fixed
    d = differ.compare(base, head)
    assert {f["rule"] for f in d.fixed} >= {"init-loss", "saturated-units"}
    assert not d.new and not d.failed("new-error") and not d.failed("new-warning")
    init = next(c for c in d.metrics if c.metric == "loss at init")
    assert init.changed and init.better and init.base > 20 and init.head < 3.5
    # One architecture, two files: the reports say it is the same model, so per-layer numbers are compared.
    assert base["probe"]["structure_hash"] == head["probe"]["structure_hash"]
    assert not any("structure" in c for c in d.caveats)
    assert any(c.where == "W2" and c.metric == "update-to-data ratio" for c in d.metrics)
    # The fixed file's tanh sits two lines lower: paired by function and order, not lost.
    saturated = next(c for c in d.metrics if c.metric == "saturated share")
    assert saturated.changed and saturated.better and "→" in saturated.where


def test_the_reverse_is_a_regression_and_fails_the_gate(raw_and_fixed):
    base, head = raw_and_fixed
    d = differ.compare(head, base)
    assert {f["rule"] for f in d.new} >= {"init-loss", "saturated-units"}
    assert d.failed("new-error") and d.failed("new-warning") and not d.failed("never")
    md = differ.to_markdown(d)
    assert md.startswith(differ.MARKER) and "✘ new" in md and "<details>" in md


def test_an_audit_against_itself_changes_nothing(raw_and_fixed):
    base, _ = raw_and_fixed
    d = differ.compare(base, copy.deepcopy(base))
    assert not (d.new or d.fixed or d.changed) and len(d.same) == len(base["findings"])
    assert not any(c.changed for c in d.metrics) and not d.caveats


def test_severity_up_is_changed_and_fails_at_its_level(raw_and_fixed):
    base, _ = raw_and_fixed
    head = copy.deepcopy(base)
    warning = next(f for f in head["findings"] if f["severity"] == "warning")
    warning["severity"] = "error"
    d = differ.compare(base, head)
    assert [h["rule"] for _, h in d.changed] == [warning["rule"]]
    assert d.failed("new-error")
    assert "✘ worse" in differ.to_markdown(d)


def test_tolerances_decide_changed(raw_and_fixed):
    base, _ = raw_and_fixed
    head = copy.deepcopy(base)
    head["probe"]["initial_loss"] = base["probe"]["initial_loss"] * 1.05  # within 10%
    head["probe"]["loop_seconds"] = base["probe"]["loop_seconds"] * 1.2  # within 25%
    name = next(iter(head["metrics"]["parameters"]))
    head["metrics"]["parameters"][name]["update_data_ratio"] *= 3  # beyond x2
    moved = {(c.metric, c.where) for c in differ.compare(base, head).metrics if c.changed}
    assert moved == {("update-to-data ratio", name)}


def test_different_settings_are_said(raw_and_fixed):
    base, head = raw_and_fixed
    head = copy.deepcopy(head)
    head["probe"]["steps"] = 50
    head["probe"]["device"] = "cuda:0"
    d = differ.compare(base, head)
    assert any("steps" in c for c in d.caveats) and any("devices differ" in c for c in d.caveats)
    assert not any(c.metric.startswith("probe speed") for c in d.metrics)


def test_cli_diff_exit_codes_and_out_file(tmp_path, raw_and_fixed):
    base, head = raw_and_fixed
    b, h = _write(tmp_path, "base", base), _write(tmp_path, "head", head)
    assert _run("diff", b, h).exit_code == 0
    bad = _run("diff", h, b / "report.json")
    assert bad.exit_code == 1 and "✘ new" in bad.output
    assert _run("diff", h, b, "--fail-on", "never").exit_code == 0
    result = _run("diff", b, h, "--out", tmp_path / "diff.md")
    assert result.exit_code == 0 and (tmp_path / "diff.md").read_text().startswith(differ.MARKER)


@pytest.mark.parametrize("content, says", [
    (None, "no such report"),
    ("{not json", "not valid JSON"),
    ('{"findings": []}', "not a training-run audit report"),
    ('{"schema_version": 99}', "schema_version 99"),
    ('{"schema_version": 1, "verdict": "fine"}', "does not match report.schema.json"),
])
def test_bad_reports_are_one_line_errors(tmp_path, raw_and_fixed, content, says):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    good = _write(tmp_path, "good", raw_and_fixed[0])
    result = _run("diff", good, path)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in result.output


def test_baseline_in_the_same_run(tmp_path, raw_and_fixed):
    base = _write(tmp_path, "base", raw_and_fixed[0])
    out = tmp_path / "out"
    model = SAMPLES / "makemore_fixed"
    result = _run(model / "model.py", "--data", model / "loader.py", "--steps", "30", "--out", out, "--format",
                  "json", "--baseline", base, "--fail-on", "new-error", "--no-verify-fixes")
    assert result.exit_code == 0, result.output
    text = (out / "diff.md").read_text()
    assert "✔ fixed" in text and "init-loss" in text
    assert "steps (100 → 30)" in text  # the caveat: two probes of different lengths


def test_new_fail_on_needs_a_baseline(tmp_path):
    model = SAMPLES / "makemore_fixed"
    result = _run(model / "model.py", "--data", model / "loader.py", "--fail-on", "new-error")
    assert result.exit_code == 2 and "--baseline" in result.output
