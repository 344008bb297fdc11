"""A report that is never lost: real signals sent to a real `audit` process mid-probe, a loader that hangs
under --timeout, and an exception in the user's code after the first step, each leave a partial report."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from auditor.report import schema

MODEL = '''
import os, time, torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 4))
if os.environ.get("BIG_INIT"):  # a loss at init far too high: init-loss, with a fix to verify
    with torch.no_grad():
        model[2].weight.mul_(60)
if os.environ.get("HANG_AT_IMPORT"):
    open(os.environ["READY"], "w").close()
    time.sleep(600)


class Loader:
    """Slow enough that a signal lands mid-replay; says when it has handed out READY_AT batches."""

    iterations = 0

    def __iter__(self):
        g = torch.Generator().manual_seed(0)
        Loader.iterations += 1
        if Loader.iterations == int(os.environ.get("READY_ITER", 10**9)):
            open(os.environ["READY"], "w").close()
        for i in range(10_000):
            if i == int(os.environ.get("READY_AT", 10**9)):
                open(os.environ["READY"], "w").close()
            if i == int(os.environ.get("HANG_AT", 10**9)):
                time.sleep(600)
            if i == int(os.environ.get("BAD_AT", 10**9)):
                yield torch.randn(16, 5), torch.randint(0, 4, (16,))  # 5 features where the model takes 8
                continue
            time.sleep(float(os.environ.get("DELAY", "0")))
            x = torch.randn(16, 8, generator=g)
            yield x, (x[:, :4]).argmax(1)


train_loader = Loader()
'''


@pytest.fixture
def job(tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    return tmp_path


def _start(job, env, *extra):
    return subprocess.Popen([sys.executable, "-m", "auditor", "model.py", "--out", "out", "--format",
                             "json,md,html", *extra], cwd=job, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "READY": str(job / "ready"), **env})


def _wait_for(path, proc, limit=120):
    deadline = time.monotonic() + limit
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the audit never got going"
        time.sleep(0.05)


def _partial_report(job) -> dict:
    report = json.loads((job / "out" / "report.json").read_text())
    assert schema.errors(report) == []
    assert report["partial"] is True
    assert "Partial report" in (job / "out" / "report.md").read_text()
    assert "Partial report:" in (job / "out" / "report.html").read_text()
    return report


@pytest.mark.parametrize("sig, code, says", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")])
def test_a_signal_mid_probe_writes_a_partial_report(job, sig, code, says):
    proc = _start(job, {"READY_AT": "12", "DELAY": "0.03"}, "--steps", "300")
    _wait_for(job / "ready", proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    report = _partial_report(job)
    assert says in report["partial_reason"] and "partial report" in err
    assert 8 <= report["probe"]["steps_run"] < 300
    assert len(report["metrics"]["loss"]) == report["probe"]["steps_run"]
    assert "Traceback" not in err


@pytest.mark.parametrize("env, doing", [
    # The replay takes batches 0-29; the LR range test goes on from batch 30 of the same stream.
    ({"READY_AT": "36", "DELAY": "0.05"}, "the experiments after the replay"),
    # Fix verification re-probes from a fresh iteration of the loader: the second one.
    ({"READY_ITER": "2", "BIG_INIT": "1", "DELAY": "0.05"}, "verifying the fix for init-loss"),
], ids=["experiments", "verification"])
def test_a_signal_after_the_replay_keeps_the_whole_replay(job, env, doing):
    proc = _start(job, env, "--steps", "30")
    _wait_for(job / "ready", proc)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    report = _partial_report(job)
    assert doing in report["partial_reason"] and "SIGTERM" in report["partial_reason"]
    assert report["probe"]["steps_run"] == 30
    assert len(report["metrics"]["loss"]) == 30
    assert "Traceback" not in err


def test_a_hanging_loader_is_stopped_by_timeout_and_named(job):
    proc = _start(job, {"HANG_AT": "6"}, "--steps", "100", "--timeout", "20")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 2, err
    report = _partial_report(job)
    assert "--timeout 20 s while reading a batch from the loader in model.py" in report["partial_reason"]
    assert report["probe"]["steps_run"] == 6  # four init batches replayed, then batches 4 and 5


def test_an_error_in_user_code_mid_probe_keeps_what_was_measured(job):
    proc = _start(job, {"BAD_AT": "20"}, "--steps", "100", "--no-verify-fixes")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 2, err
    report = _partial_report(job)
    assert report["probe"]["steps_run"] == 20
    assert "stopped by an error at probe step 20" in report["partial_reason"]
    assert "mat1 and mat2" in report["partial_reason"] or "shapes" in report["partial_reason"]
    # Nothing was wrong in the 20 steps measured: said so, not called clean.
    assert report["findings"] == [] and "no findings in the 20 steps measured" in out and "clean" not in out
    assert "not a clean bill" in (job / "out" / "report.md").read_text()
    assert "not a clean bill" in (job / "out" / "report.html").read_text()


def test_a_signal_before_anything_is_measured_says_so(job):
    proc = _start(job, {"HANG_AT_IMPORT": "1"}, "--steps", "10")
    _wait_for(job / "ready", proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert "nothing had been measured yet" in err and "importing model.py" in err
    assert not (job / "out").exists()


def test_the_api_still_raises(tmp_path):
    """Only the command line turns an error mid-probe into a partial report; a script calling audit() gets
    the exception, as it would from its own training loop."""
    import torch
    from torch import nn

    import auditor
    from auditor.errors import AuditError

    model = nn.Sequential(nn.Linear(8, 4))
    batches = [(torch.randn(16, 8), torch.randint(0, 4, (16,)))] * 10 + [(torch.randn(16, 5), torch.zeros(16).long())]
    with pytest.raises(AuditError, match="mat1 and mat2"):
        auditor.audit(model, batches, steps=20, verify_fixes=False)
