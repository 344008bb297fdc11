"""The progress display: every phase named on a terminal's stderr, nothing of it when stderr is a pipe or with
-q; and --tensorboard's event files hold what it says."""

import os
import pty
import subprocess
import sys

import pytest
from conftest import SAMPLES

MODEL = SAMPLES / "makemore_raw"


def _on_a_terminal(args, tmp_path) -> str:
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "auditor", *map(str, args)], stdin=follower, stdout=follower,
                            stderr=follower, cwd=tmp_path, env={**os.environ, "COLUMNS": "120"})
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=300)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_every_phase_is_shown_on_a_terminal(tmp_path):
    out = _on_a_terminal([MODEL / "model.py", "--data", MODEL / "loader.py", "--steps", "40", "--format",
                          "json,md"], tmp_path)
    for phase in ("replay", "experiments", "verifying fixes", "writing reports"):
        assert f"auditing model.py: {phase}" in out, phase
    assert "/40 " in out and "What went wrong" in out  # the replay phase counts its 40 steps


def test_quiet_and_pipes_show_no_progress(tmp_path):
    quiet = _on_a_terminal([MODEL / "model.py", "--data", MODEL / "loader.py", "--steps", "20", "--format", "json",
                            "-q", "--no-verify-fixes"], tmp_path)
    assert "auditing model.py" not in quiet and "What went wrong" in quiet
    piped = subprocess.run([sys.executable, "-m", "auditor", MODEL / "model.py", "--data", MODEL / "loader.py",
                            "--steps", "20", "--format", "json", "--no-verify-fixes"], capture_output=True,
                           text=True, cwd=tmp_path, timeout=300)
    assert "auditing model.py" not in piped.stderr and "probed 20 steps" in piped.stderr


def test_tensorboard_event_files(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from click.testing import CliRunner

    from auditor.cli import cli

    result = CliRunner().invoke(cli, [str(MODEL / "model.py"), "--data", str(MODEL / "loader.py"), "--steps", "30",
                                      "--format", "json", "--out", str(tmp_path / "out"), "--no-verify-fixes",
                                      "--tensorboard", str(tmp_path / "tb")], catch_exceptions=False)
    assert result.exit_code == 1
    ea = event_accumulator.EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "histograms": 0})
    ea.Reload()
    tags = ea.Tags()
    assert [e.step for e in ea.Scalars("probe/loss")] == list(range(30))
    assert ea.Scalars("probe/loss")[0].value > 20  # the makemore init: loss ~27
    assert {"probe/grad_norm", "update_to_data/W2", "grad_to_data/W1"} <= set(tags["scalars"])
    assert any(t.startswith("activations/tanh") for t in tags["histograms"])
    assert any(t.startswith("activation_grads/tanh") for t in tags["histograms"])


def test_tensorboard_missing_is_one_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from auditor.cli import cli

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    result = CliRunner().invoke(cli, [str(MODEL / "model.py"), "--data", str(MODEL / "loader.py"), "--steps", "5",
                                      "--format", "json", "--out", str(tmp_path / "out"), "--no-verify-fixes",
                                      "--tensorboard", str(tmp_path / "tb")])
    assert result.exit_code == 2 and "pip install 'training-run-auditor[tensorboard]'" in result.output
    assert (tmp_path / "out" / "report.json").exists()  # the reports were written before
