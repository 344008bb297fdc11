"""The command line contract: exit codes, outputs, options, subcommands."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import cli

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def _run(args, **kw):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False, **kw)


def _sample(name):
    return [SAMPLES / name / "model.py", "--data", SAMPLES / name / "loader.py"]


def test_findings_exit_1_and_write_reports(tmp_path):
    r = _run([*_sample("makemore_raw"), "--out", tmp_path])
    assert r.exit_code == 1, r.output
    assert "init-loss" in r.output and "saturated-units" in r.output
    data = json.loads((tmp_path / "report.json").read_text())
    assert set(data) >= {"findings", "probe", "metrics", "verdict", "schema_version"}
    for key in ("initial_loss", "expected_initial_loss", "num_classes", "steps", "device", "loss_fn", "optimizer"):
        assert key in data["probe"]
    finding = data["findings"][0]
    assert set(finding) == {"rule", "severity", "title", "diagnosis", "fix", "layers", "evidence", "verified", "onset",
                            "advice", "explains", "explained_by", "because", "fix_moot"}
    assert data["root_causes"] and data["root_causes"][0] in {f["rule"] for f in data["findings"]}
    md = (tmp_path / "report.md").read_text()
    assert "Training-run audit: errors" in md and "`init-loss`" in md


def test_clean_sample_exits_0(tmp_path):
    r = _run([*_sample("makemore_fixed"), "--out", tmp_path])
    assert r.exit_code == 0, r.output
    assert "clean" in r.output
    assert json.loads((tmp_path / "report.json").read_text())["findings"] == []


def test_fail_on_and_ignore(tmp_path):
    hockey = _sample("loss_hockey_stick")
    assert _run([*hockey, "--out", tmp_path, "--fail-on", "never"]).exit_code == 0
    r = _run([*hockey, "--out", tmp_path, "--ignore", "init-loss", "--ignore", "loss-plateau"])
    assert r.exit_code == 0, r.output  # only the hockey-stick warning is left, below --fail-on error
    assert _run([*hockey, "--out", tmp_path, "--ignore", "init-loss", "--fail-on", "warning"]).exit_code == 1


def test_threshold_override_on_command_line(tmp_path):
    r = _run([*_sample("init_loss"), "--out", tmp_path, "--set", "init-loss.excess_nats=100",
              "--set", "loss-hockey-stick.excess_nats=100"])
    assert "init-loss" not in r.output and r.exit_code == 0


def test_format_subset(tmp_path):
    r = _run([*_sample("makemore_fixed"), "--out", tmp_path, "--format", "md"])
    assert r.exit_code == 0
    assert (tmp_path / "report.md").exists() and not (tmp_path / "report.json").exists()


def test_pyproject_settings(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.auditor]\nsteps = 30\nfail-on = "never"\n'
                                             '[tool.auditor.rules.init-loss]\nexcess_nats = 50\n')
    model = (SAMPLES / "init_loss" / "model.py").read_text()
    (tmp_path / "model.py").write_text(model)
    (tmp_path / "loader.py").write_text((SAMPLES / "init_loss" / "loader.py").read_text()
                                        .replace("parents[1]", f"parents[0] / {str(SAMPLES)!r}"))
    r = _run([tmp_path / "model.py", "--data", tmp_path / "loader.py", "--out", tmp_path / "out"])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["probe"]["steps"] == 30
    assert "init-loss" not in [f["rule"] for f in data["findings"]]


def test_rules_and_explain():
    r = _run(["rules"])
    assert r.exit_code == 0 and "init-loss" in r.output and "loss-hockey-stick" in r.output
    r = _run(["explain", "saturated-units"])
    assert r.exit_code == 0
    for section in ("Why is this bad?", "Use instead:", "References:", "warn_fraction = 0.35"):
        assert section in r.output
    assert _run(["explain", "no-such-rule"]).exit_code == 2


def test_usage_errors_exit_2(tmp_path):
    assert _run([*_sample("makemore_fixed"), "--format", "xml"]).exit_code == 2
    assert _run([*_sample("makemore_fixed"), "--ignore", "no-such-rule"]).exit_code == 2
    assert _run([*_sample("makemore_fixed"), "--set", "init-loss.nope=1"]).exit_code == 2
    assert _run([*_sample("makemore_fixed"), "--set", "garbage"]).exit_code == 2
    assert _run([*_sample("makemore_fixed"), "--steps", "0"]).exit_code == 2


def test_installed_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "auditor", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "audit model.py --data loader.py" in out.stdout


HEAVY = ("torch", "matplotlib", "weasyprint", "scipy")


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["rules"], ["explain", "init-loss"], ["run", "--help"],
                                  ["model.py", "--help"], ["diff", "--help"]])
def test_help_and_the_catalogue_import_nothing_heavy(argv):
    """Issue 21: `audit --help`, `audit rules`, `audit explain` answer in well under half a second because nothing
    heavy loads (torch alone is ~2 s on a 2-core CPU). Asserted on what gets imported, not on a time."""
    probe = "\n".join(["import sys", "from auditor.cli import cli", "try:", f"    cli({argv!r})",
                       "except SystemExit as e:", "    code = e.code",
                       f"print('LOADED', sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})), code)"])
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("LOADED"))
    assert line == "LOADED [] 0", (line, out.stderr[-500:])


def test_a_format_not_asked_for_costs_nothing(tmp_path):
    """json and md draw no figure and make no PDF: matplotlib and WeasyPrint are never imported."""
    argv = [*map(str, _sample("makemore_fixed")), "--format", "json,md", "--out", str(tmp_path), "-q",
            "--no-verify-fixes"]
    probe = "\n".join(["import sys", "from auditor.cli import cli", "try:", f"    cli({argv!r})",
                       "except SystemExit as e:", "    code = e.code",
                       "print('LOADED', sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'weasyprint'}),"
                       " code)"])
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert "LOADED [] 0" in out.stdout, (out.stdout[-300:], out.stderr[-500:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]


UNSEEDED = """
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))  # built at import, nothing seeded
x = torch.randn(256, 8)
train_loader = DataLoader(TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()), batch_size=32, shuffle=True)
"""


def test_same_command_same_report_when_model_py_seeds_nothing(write, tmp_path):
    # --seed seeds python, numpy and torch before model.py is imported: its weights and data are the same each run.
    model = write("model.py", UNSEEDED)
    runs = []
    for i in range(2):
        r = _run([model, "--steps", 20, "--format", "json", "--seed", 3, "--out", tmp_path / str(i)])
        assert r.exit_code in (0, 1), r.output
        runs.append(json.loads((tmp_path / str(i) / "report.json").read_text()))
    assert runs[0]["probe"]["initial_loss"] == runs[1]["probe"]["initial_loss"]
    assert runs[0]["metrics"] == runs[1]["metrics"]
    other = _run([model, "--steps", 20, "--format", "json", "--seed", 4, "--out", tmp_path / "other"])
    assert json.loads((tmp_path / "other" / "report.json").read_text())["probe"]["initial_loss"] != \
        runs[0]["probe"]["initial_loss"], other.output


USER_OPTIMIZER = """
import torch
from torch import nn
model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
optimizer = torch.optim.SGD(model.parameters(), lr=0.37, momentum=0.9)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
"""
USER_LOADER = """
import torch
g = torch.Generator().manual_seed(0)
x = torch.randn(256, 4, generator=g)
train_loader = [(x[i:i + 32], (x[i:i + 32, 0] > 0).long()) for i in range(0, 256, 32)]
"""


@pytest.mark.parametrize("names", [("optimizer", "scheduler"), ("opt", "sched")])
def test_an_optimizer_and_scheduler_written_as_in_a_training_script_are_the_ones_audited(write, tmp_path, names):
    """`optimizer = SGD(model.parameters(), lr=...)` at the top of model.py, as a training script writes it, was
    passed over for the default AdamW 1e-3: SGD at lr 50 audited clean. The probe copies it, and its scheduler,
    as it does the API's optimizer= and scheduler=; the user's own objects are not stepped. Under any name:
    `opt = SGD(...)` was passed over the same way while `optimizer` was the only name read."""
    text = USER_OPTIMIZER.replace("optimizer =", f"{names[0]} =").replace("(optimizer,", f"({names[0]},")
    model = write("model.py", text.replace("scheduler =", f"{names[1]} ="))
    r = _run([model, "--data", write("loader.py", USER_LOADER), "--out", tmp_path / "out", "--steps", "12",
              "--no-verify-fixes"])
    assert r.exit_code in (0, 1), r.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    probe = report["probe"]
    assert probe["optimizer"].startswith("SGD(") and probe["lr"] == pytest.approx(0.37)
    assert probe["optimizer_default"] is False
    # The StepLR copy was stepped after every probe step: halving each time, as lr-schedule reports.
    assert "lr-schedule" in {f["rule"] for f in report["findings"]}, [f["rule"] for f in report["findings"]]


@pytest.mark.parametrize("text, message", [
    ("optimizer = 'adam'\n", "`optimizer` is a str, expected a torch.optim.Optimizer"),
    ("optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\ndef make_optimizer(p):\n    return optimizer\n",
     "defines both `optimizer` and `make_optimizer()`"),
    ("scheduler = torch.optim.lr_scheduler.StepLR(torch.optim.SGD(model.parameters(), lr=0.1), 1)\n",
     "`scheduler` needs the optimizer it was built on"),
    ("g_opt = torch.optim.Adam(model.parameters())\nd_opt = torch.optim.SGD(model.parameters(), lr=0.1)\n",
     "defines 2 optimizers (`g_opt`, `d_opt`); name the one to audit `optimizer`"),
])
def test_a_model_files_optimizer_that_cannot_be_used_is_one_line(write, tmp_path, text, message):
    model = write("model.py", "import torch\nfrom torch import nn\nmodel = nn.Linear(4, 3)\n" + text)
    r = CliRunner().invoke(cli, [str(model), "--data", str(write("loader.py", USER_LOADER)),
                                 "--out", str(tmp_path / "out")])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert r.output.startswith("audit: error:") and message in r.output, r.output


def test_the_auditor_s_options_after_the_script_are_named_where_the_script_refused_them(tmp_path):
    """Everything after SCRIPT is the script's own; `audit run train.py --out rep` hands --out to a script whose
    argparse refuses it. The one-line error says which options went astray and the command that was meant."""
    script = tmp_path / "train.py"
    script.write_text("import argparse\nimport torch\np = argparse.ArgumentParser()\n"
                      "p.add_argument('--lr', type=float)\na = p.parse_args()\nm = torch.nn.Linear(4, 2)\n"
                      "o = torch.optim.SGD(m.parameters(), lr=a.lr)\nfor _ in range(50):\n"
                      "    o.zero_grad(); m(torch.randn(8, 4)).pow(2).mean().backward(); o.step()\n")
    r = _run(["run", script, "--lr", "0.05", "--out", tmp_path / "rep", "-q"])
    assert r.exit_code == 2
    assert f"audit run --out {tmp_path / 'rep'} -q {script} --lr 0.05" in r.output
    r = _run(["run", "--out", tmp_path / "rep", "-q", "--no-verify-fixes", script, "--lr", "0.05"])
    assert r.exit_code == 0 and (tmp_path / "rep" / "report.json").exists()
