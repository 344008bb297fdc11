"""torchrun with 2 CPU processes on the gloo backend: DDP and FSDP2, the rank rules on their samples, and every
rank ending with the same exit code. Real processes, as a user launches them."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from auditor.distributed import torch_version
from auditor.report import schema

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
# The rules only a distributed run can check, and the (model, loader) samples that must trigger them: each
# bug sample holds only the broken file, the other is healthy_ddp's (tests/test_rules.py covers the rest of the
# catalogue in one process).
TRIGGERS = {"rank-same-batches": ("healthy_ddp", "rank_same_batches"), "rank-drift": ("rank_drift", "healthy_ddp")}


def torchrun(tmp_path: Path, model: str, *args: str, loader: str | None = None) -> tuple[int, str, dict]:
    out = tmp_path / "report"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "auditor", str(SAMPLES / model / "model.py"),
           "--data", str(SAMPLES / (loader or model) / "loader.py"), "--out", str(out), "--format", "json,md",
           "--no-verify-fixes", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
    text = proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    assert not report or not schema.errors(report)
    return proc.returncode, text, report


def _env() -> dict:
    import os

    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _rank_codes(text: str) -> list[int]:
    """Each failed rank's exit code, as torchrun's failure summary lists them."""
    return [int(c) for c in re.findall(r"^\s*exitcode\s+:\s*(-?\d+)", text, re.MULTILINE)]


def _loud(report: dict) -> list[str]:
    return [f["rule"] for f in report["findings"] if f["severity"] != "info"]


def test_ddp_and_fsdp2_agree_on_a_healthy_model(tmp_path):
    code_ddp, text_ddp, ddp = torchrun(tmp_path / "ddp", "healthy_ddp")
    code_fsdp, text_fsdp, fsdp = torchrun(tmp_path / "fsdp", "healthy_ddp", "--strategy", "fsdp")
    if torch_version() < (2, 7):
        # FSDP2 on CPU streams needs torch 2.7: the auditor says so in one line on every rank, and stops.
        assert code_ddp == 0 and not _loud(ddp), text_ddp
        assert code_fsdp != 0 and "--strategy fsdp on the CPU needs torch 2.7 or newer" in text_fsdp, text_fsdp
        assert not re.search(r'File "[^"]*/auditor/', text_fsdp), text_fsdp
        pytest.skip("FSDP2 on the CPU needs torch >= 2.7; DDP checked, and the one-line error for FSDP2")
    assert code_ddp == 0 and code_fsdp == 0, text_ddp + text_fsdp
    assert "Traceback" not in text_ddp + text_fsdp
    for report, strategy in ((ddp, "ddp"), (fsdp, "fsdp")):
        assert report["probe"]["world_size"] == 2 and report["probe"]["strategy"] == strategy
        assert not _loud(report), report["findings"]
        assert any("2 ranks" in n for n in report["probe"]["notes"])
    # FSDP2 shards every tensor across the ranks; its norms, combined in squares, must equal DDP's replicas'.
    for name, p in ddp["metrics"]["parameters"].items():
        q = fsdp["metrics"]["parameters"][name]
        assert q["grad_norm"] == pytest.approx(p["grad_norm"], rel=1e-4), name
        assert q["update_data_ratio"] == pytest.approx(p["update_data_ratio"], rel=1e-3), name
    assert fsdp["metrics"]["loss"] == pytest.approx(ddp["metrics"]["loss"], rel=1e-4)


@pytest.mark.parametrize(("rule", "model", "loader"), sorted((r, m, d) for r, (m, d) in TRIGGERS.items()))
def test_rank_rule_fires_on_its_sample_and_every_rank_exits_1(tmp_path, rule, model, loader):
    code, text, report = torchrun(tmp_path, model, loader=loader)
    assert code != 0 and report, text
    # torchrun lists the ranks that had exited when it polled (every 0.1 s; torch < 2.7 does not poll again
    # after stopping the rest), so one rank or both: each with the verdict's code, none killed by a signal.
    # test_every_rank_exits_with_rank_0s_code checks every rank's own exit status.
    assert _rank_codes(text) and set(_rank_codes(text)) == {1}, text
    assert rule in _loud(report), report["findings"]
    assert report["root_causes"][0] == rule
    others = set(TRIGGERS) - {rule}
    assert not others & set(_loud(report))
    # torchrun prints its own traceback (ChildFailedError) for any non-zero exit; none may come from the auditor.
    assert not re.search(r'File "[^"]*/auditor/', text), text


def test_an_epoch_loop_without_set_epoch_is_found_under_torchrun(tmp_path):
    code, text, report = torchrun(tmp_path, "healthy_ddp", loader="set_epoch_forgotten")
    assert code == 0, text  # a warning: the job trains, on one epoch's order over and over
    (f,) = [f for f in report["findings"] if f["rule"] == "rank-same-batches"]
    assert f["title"] == "Every epoch repeats the same order" and f["severity"] == "warning"
    assert len(f["evidence"]["epochs"]) >= 4 and set(f["evidence"]["epochs"]) == {0}  # 16 batches a rank
    assert report["root_causes"] == ["rank-same-batches"]


def test_every_rank_exits_with_rank_0s_code(tmp_path):
    """The ranks started as torchrun starts them (the env:// contract), so that each one's exit status is its own
    and not what torchrun happened to see before stopping the others."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "auditor", str(SAMPLES / "rank_drift" / "model.py"), "--data",
           str(SAMPLES / "healthy_ddp" / "loader.py"), "--format", "json", "--no-verify-fixes", "-q"]
    procs = []
    for rank in range(2):
        env = {**_env(), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
               "RANK": str(rank), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2"}
        procs.append(subprocess.Popen([*cmd, "--out", str(tmp_path / f"out{rank}")], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [1, 1], results  # rank-drift is an error: exit 1 on both
    assert (tmp_path / "out0" / "report.json").exists() and not (tmp_path / "out1").exists()  # rank 0 writes
    assert "rank-drift" in results[0][0] and not results[1][0].strip(), results  # the verdict: rank 0's alone


def test_model_py_wrap_is_used_and_strategy_needs_torchrun(tmp_path):
    _, _, report = torchrun(tmp_path, "rank_drift", loader="healthy_ddp")
    assert report["probe"]["strategy"] == "wrap()"
    proc = subprocess.run([sys.executable, "-m", "auditor", str(SAMPLES / "healthy_ddp" / "model.py"), "--data",
                           str(SAMPLES / "healthy_ddp" / "loader.py"), "--strategy", "fsdp", "--out",
                           str(tmp_path / "one")], capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[0].startswith("audit: error: --strategy fsdp") and "torchrun" in proc.stderr


SLOW_MODEL = '''
import os, time, torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 4))


class Loader:
    """Slow enough that a signal lands mid-replay; says when it has handed out 12 batches."""

    def __iter__(self):
        g = torch.Generator().manual_seed(int(os.environ.get("RANK", "0")))
        for i in range(10_000):
            if i == 12:
                open(os.environ["READY"] + os.environ.get("RANK", "0"), "w").close()
            time.sleep(0.05)
            x = torch.randn(16, 8, generator=g)
            yield x, x[:, :4].argmax(1)


train_loader = Loader()
'''


def test_sigterm_under_torchrun_stops_every_rank_at_the_same_step_with_a_partial_report(tmp_path):
    import os
    import signal
    import time

    (tmp_path / "model.py").write_text(SLOW_MODEL)
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "-m", "auditor", "model.py", "--steps", "300", "--out", "out", "--format", "json,md"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**_env(), "READY": str(ready)}, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (Path(f"{ready}0").exists() and Path(f"{ready}1").exists()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)  # as a CI timeout or Ctrl-C in a terminal does: every process at once
    out, err = proc.communicate(timeout=120)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert not schema.errors(report)
    assert report["partial"] is True and "SIGTERM" in report["partial_reason"], report["partial_reason"]
    # The ranks agreed where to stop (every 10 steps): the statistics of both cover the same steps.
    assert report["probe"]["steps_run"] % 10 == 0 and 10 <= report["probe"]["steps_run"] < 300
    assert len(report["metrics"]["loss"]) == report["probe"]["steps_run"]
    assert report["probe"]["world_size"] == 2
    assert not re.search(r'File "[^"]*/auditor/', out + err), err
    assert "internal error" not in out + err


SCRIPT = Path(__file__).resolve().parent / "corpus" / "scripts" / "ddp_sampler.py"


@pytest.mark.parametrize(("flag", "rule"), [(None, None), ("--no-sampler", "rank-same-batches"),
                                            ("--no-ddp", "rank-drift")])
def test_audit_run_under_torchrun_reads_every_rank(tmp_path, flag, rule):
    """`torchrun -m auditor run train.py`: the script's own process group carries the rank evidence, gathered
    at the stop, before its `finally:` destroys the group. No sampler: every rank trains on the same batches;
    no DDP: each rank's copy drifts from the others'."""
    out = tmp_path / "report"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "auditor",
           "run", "-q", "--format", "json", "--out", str(out), str(SCRIPT), *([flag] if flag else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
    report = json.loads((out / "report.json").read_text())
    assert not schema.errors(report)
    assert not re.search(r'File "[^"]*/auditor/', proc.stdout + proc.stderr), proc.stderr
    if rule is None:
        assert proc.returncode == 0 and not _loud(report), _loud(report)
    else:
        assert report["root_causes"][:1] == [rule], report["root_causes"]
        assert proc.returncode != 0
