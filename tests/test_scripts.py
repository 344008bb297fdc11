"""`audit run train.py ARGS`: the user's own script, run unchanged and observed; the loop rules on samples that
must trigger them and on careful scripts that must not."""

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from auditor.api import audit_script
from auditor.errors import AuditError
from auditor.probe.script import Script

SCRIPTS = Path(__file__).resolve().parents[1] / "samples" / "scripts"

# The loop rules, each on the script written to show it; lr-schedule also has a model.py sample (test_rules).
TRIGGERS = {
    "missing-zero-grad": "missing_zero_grad",
    "grads-zeroed-before-step": "grads_zeroed_before_step",
    "train-in-eval-mode": "train_in_eval_mode",
    "eval-in-train-mode": "eval_in_train_mode",
    "clip-before-unscale": "clip_before_unscale",
    "stale-optimizer": "stale_optimizer",
    "clip-too-tight": "clip_too_tight",
}
HEALTHY = ["healthy_mlp", "careful_loop"]


@functools.cache
def _audit(name, *args, steps=100):
    # One audit of a script per arguments, shared by the tests that read it: a script audit re-runs the script
    # for the LR range test and for each fix, tens of seconds on a CPU. The tests only read the report.
    return audit_script(Script(str(SCRIPTS / name / "train.py"), list(args)), steps=steps)


@pytest.mark.parametrize(("rule", "sample"), list(TRIGGERS.items()) + [("lr-schedule", "lr_schedule")])
def test_loop_rule_fires_and_heads_the_report(rule, sample):
    report = _audit(sample)
    fired = [f for f in report.findings if f.rule == rule]
    assert fired, f"{rule} did not fire on {sample}: {[f.rule for f in report.findings]}"
    assert fired[0].severity in ("warning", "error") and fired[0].fix
    # The loop bug is the root cause, whatever symptoms it set off, and its fix is proven on the script itself.
    assert report.root_causes[0] == rule, report.root_causes
    verified = fired[0].verified
    assert verified.get("outcome") in ("resolved", "improved"), verified
    assert report.settings["mode"] == "script" and report.evidence.probe.steps_run == 100


@pytest.mark.parametrize("sample", HEALTHY)
def test_careful_script_is_clean(sample):
    report = _audit(sample)
    loud = [(f.rule, f.diagnosis) for f in report.findings if f.severity != "info"]
    assert not loud, f"false alarm on {sample}: {loud}"


def test_script_arguments_and_argv_are_the_scripts(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        "import sys, os, torch\n"
        "seen = {'argv': sys.argv[1:], 'path0': sys.path[0], 'name': __name__}\n"
        "open(os.path.join(os.path.dirname(__file__), 'seen.txt'), 'w').write(repr(seen))\n"
        "m = torch.nn.Linear(4, 2); o = torch.optim.SGD(m.parameters(), lr=0.1)\n"
        "for _ in range(50):\n"
        "    o.zero_grad()\n"
        "    torch.nn.functional.cross_entropy(m(torch.randn(8, 4)), torch.randint(0, 2, (8,))).backward()\n"
        "    o.step()\n")
    report = audit_script(Script(str(script), ["--out", "ckpt", "-x"]), steps=10)
    seen = eval((tmp_path / "seen.txt").read_text())
    assert seen == {"argv": ["--out", "ckpt", "-x"], "path0": str(tmp_path), "name": "__main__"}
    assert report.evidence.probe.steps_run == 10
    assert report.settings["args"] == ["--out", "ckpt", "-x"]


def test_stop_is_not_swallowed_and_finally_runs(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        "import torch, pathlib\n"
        "m = torch.nn.Linear(4, 2); o = torch.optim.SGD(m.parameters(), lr=0.1)\n"
        "try:\n"
        "    for _ in range(1000):\n"
        "        try:\n"
        "            o.zero_grad(); m(torch.randn(8, 4)).pow(2).mean().backward(); o.step()\n"
        "        except Exception:\n"
        "            pass\n"
        "finally:\n"
        "    pathlib.Path(__file__).with_name('finally.txt').write_text('ran')\n")
    report = audit_script(Script(str(script)), steps=20)
    assert report.evidence.probe.steps_run == 20
    assert (tmp_path / "finally.txt").read_text() == "ran"


@pytest.mark.parametrize(("text", "message"), [
    (None, "no such file"),
    ("def f(:\n", "train.py:1: syntax error"),
    ("import sys\nsys.exit(3)\n", "exited before its first optimizer step"),
    ("x = 1\n", "without an optimizer step"),
    # An update by hand (pytorch/examples' word_language_model): stopped early, not after the whole run.
    ("import torch\nw = torch.zeros(4, requires_grad=True)\nfor _ in range(10 ** 6):\n"
     "    (w - 1).pow(2).sum().backward()\n"
     "    with torch.no_grad():\n        w.add_(w.grad, alpha=-0.1); w.grad = None\n",
     "ran 512 backward passes without an optimizer step, so it was stopped there"),
    ("import torch\nraise ValueError('bad config')\n", "train.py:2: ValueError: bad config"),
])
def test_bad_scripts_are_one_line_errors(tmp_path, text, message):
    script = tmp_path / "train.py"
    if text is not None:
        script.write_text(text)
    with pytest.raises(AuditError) as err:
        audit_script(Script(str(script)), steps=5)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_crash_after_some_steps_is_a_partial_report(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        "import torch\n"
        "m = torch.nn.Linear(4, 2); o = torch.optim.SGD(m.parameters(), lr=0.1)\n"
        "for i in range(100):\n"
        "    if i == 7: raise RuntimeError('out of data')\n"
        "    o.zero_grad(); m(torch.randn(8, 4)).pow(2).mean().backward(); o.step()\n")
    report = audit_script(Script(str(script)), steps=50)
    assert report.partial and report.evidence.probe.steps_run == 7
    assert "RuntimeError: out of data" in report.probe.partial_reason


def test_raw_tensors_without_a_module_are_named(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        "import torch\n"
        "W1 = torch.randn(10, 50, requires_grad=True); W2 = torch.randn(50, 3) * 0.1\n"
        "W2.requires_grad_()\n"
        "opt = torch.optim.SGD([W1, W2], lr=0.1)\n"
        "X = torch.randn(256, 10); Y = torch.randint(0, 3, (256,))\n"
        "for _ in range(200):\n"
        "    h = torch.tanh(X @ W1)\n"
        "    loss = torch.nn.functional.cross_entropy(h @ W2, Y)\n"
        "    opt.zero_grad(); loss.backward(); opt.step()\n")
    report = audit_script(Script(str(script)), steps=30)
    assert {p.name for p in report.evidence.params} == {"W1", "W2"}
    assert report.probe.expected_initial_loss == pytest.approx(1.0986, abs=1e-3)


def test_cli_audit_run_writes_reports_and_exit_code(tmp_path):
    out = tmp_path / "rep"
    done = subprocess.run([sys.executable, "-m", "auditor", "run", "-q", "--format", "json", "--out", str(out),
                           "--steps", "30", str(SCRIPTS / "missing_zero_grad" / "train.py")], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "missing-zero-grad" in done.stdout
    data = json.loads((out / "report.json").read_text())
    assert data["settings"]["mode"] == "script" and data["root_causes"][0] == "missing-zero-grad"


def test_cli_module_form(tmp_path):
    pkg = tmp_path / "proj"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "train.py").write_text((SCRIPTS / "healthy_mlp" / "train.py").read_text())
    done = subprocess.run([sys.executable, "-m", "auditor", "run", "-q", "--format", "json", "--out",
                           str(tmp_path / "rep"), "--steps", "30", "-m", "proj.train", "--epochs", "2"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["settings"]["script"] == "-m proj.train" and data["settings"]["args"] == ["--epochs", "2"]


def test_script_autocast_and_scaler_are_evidence():
    report = _audit("clip_before_unscale", steps=20)
    amp = report.evidence.amp
    assert amp["mode"] == "bf16" and amp["scaler"]["init_scale"] == 65536.0
    assert (amp["scales"][:20] > 0).all()  # the script's own scaler, read at every step
    assert report.settings["mode"] == "script" and report.probe.amp == "bf16"


def test_a_script_whose_every_fp16_step_is_skipped_is_one_line(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        "import torch\n"
        "m = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))\n"
        "torch.nn.init.constant_(m[0].weight, 1e4)  # fp16 activations pass 65504 from the first forward\n"
        "opt = torch.optim.SGD(m.parameters(), lr=0.1)\n"
        "scaler = torch.amp.GradScaler('cpu')\n"
        "for _ in range(1000):\n"
        "    x = torch.rand(16, 32) + 1\n"
        "    with torch.autocast('cpu', dtype=torch.float16):\n"
        "        loss = torch.nn.functional.cross_entropy(m(x), torch.randint(0, 4, (16,)))\n"
        "    opt.zero_grad()\n"
        "    scaler.scale(loss).backward()\n"
        "    scaler.step(opt)\n"
        "    scaler.update()\n")
    with pytest.raises(AuditError) as err:
        audit_script(Script(str(script)), steps=20)
    assert "skipped every one of its 20 steps" in str(err.value)


def test_fp16_precision_check_runs_on_a_scripts_own_batch_at_the_scale_its_backward_saw():
    """The script trains under fp16 autocast with no GradScaler and divides its loss by 32 accumulation steps
    after the loss function: the check reads that divisor from the loss it backpropagated, and finds the logits'
    gradients flushed to zero, as the model.py sample of the same fault does."""
    report = _audit("amp_underflow", steps=30)
    precision = report.evidence.amp["precision"]
    assert abs(precision["scale"] - 1 / 32) < 1e-3, precision["scale"]
    assert precision["grads"]["out"]["flushed"] > 0.9
    assert report.root_causes[:1] == ["amp-underflow"], report.root_causes
    # Its fix (the script's disabled GradScaler made again, enabled, at 2**16) proven on the script itself.
    verified = next(f for f in report.findings if f.rule == "amp-underflow").verified
    assert verified["outcome"] == "resolved" and verified["after"] < 0.01, verified
    # The same loop through a GradScaler: its scale (2**16) times the divisor keeps every gradient representable.
    scaled = _audit("amp_underflow", "--scaler", steps=30)
    assert scaled.evidence.amp["precision"]["scale"] > 1000
    assert "amp-underflow" not in [f.rule for f in scaled.findings], [f.rule for f in scaled.findings]


@pytest.mark.parametrize(("sample", "rule", "healthy"), [("batch_mixing", "batch-mixing", None),
                                                         ("causal_leak", "causal-leak", "--causal")])
def test_model_experiments_run_on_a_scripts_own_batches(sample, rule, healthy):
    """Batch mixing and a causal leak read the model alone, on the inputs the script fed it: they run whatever
    the script's loss does with the output (the causal-leak script reshapes its logits before the loss, which
    the loss-recomputing experiments cannot follow). A model that does not leak is left alone."""
    report = _audit(sample, steps=30)
    assert report.root_causes[:1] == [rule], report.root_causes
    if healthy:
        fixed = _audit(sample, healthy, steps=30)
        assert fixed.evidence.causal_leak is not None and not fixed.evidence.causal_leak["leaks"]
        assert rule not in [f.rule for f in fixed.findings], [f.rule for f in fixed.findings]


def test_a_gan_is_reported_per_optimizer():
    # The generator's optimizer is never zeroed; the discriminator's loop is right. Each optimizer gets a report
    # of its own, from a run that observed it, and the bug is in the generator's alone, its fix proven there.
    report = _audit("gan")
    assert [r.settings["optimizer"]["model"] for r in report.players] == ["Discriminator", "Generator"]
    assert report.players[0] is report
    d, g = report.players
    assert not [f.rule for f in d.findings if f.severity != "info"], [f.rule for f in d.findings]
    assert g.root_causes[0] == "missing-zero-grad"
    fired = next(f for f in g.findings if f.rule == "missing-zero-grad")
    assert fired.verified["outcome"] == "resolved", fired.verified
    assert g.evidence.loop["backwards"][:3] == [1, 1, 1]  # the discriminator's backward is not the generator's
    healthy = _audit("gan", "--zero-grad")
    assert len(healthy.players) == 2
    assert not [f.rule for r in healthy.players for f in r.findings if f.severity != "info"]


def test_cli_writes_one_report_per_optimizer(tmp_path):
    done = subprocess.run([sys.executable, "-m", "auditor", "run", "-q", "--format", "json", "--out", str(tmp_path),
                           str(SCRIPTS / "gan" / "train.py")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr
    first = json.loads((tmp_path / "report.json").read_text())
    second = json.loads((tmp_path / "optimizer-2-Generator" / "report.json").read_text())
    assert first["settings"]["optimizer"] == {"index": 0, "of": 2, "optimizer": "Adam", "model": "Discriminator"}
    assert first["verdict"] == "clean" and second["root_causes"][0] == "missing-zero-grad"
    assert "optimizer 2 of 2: Adam training Generator" in done.stdout


def test_lr_range_test_runs_on_the_script_itself():
    # The sweep is the script re-run with its rate swept, on fresh batches from its own loader: a rate ten times
    # past where the loss bottoms out is the headline, and the suggestion is proven on the script.
    report = _audit("lr_too_high")
    sweep = report.evidence.lr_range
    assert sweep is not None and len(sweep["lrs"]) >= 20
    assert sweep["lrs"][0] == pytest.approx(1e-6) and sweep["lrs"][1] > sweep["lrs"][0]
    assert 0.03 < sweep["good_high"] < 1.0, sweep["good_high"]
    assert report.root_causes[0] == "lr-range", report.root_causes
    fired = next(f for f in report.findings if f.rule == "lr-range")
    assert fired.verified["outcome"] in ("resolved", "improved") and fired.verified["loss_after"] < 0.5
    healthy = _audit("lr_too_high", "--lr", "0.05")
    assert healthy.evidence.lr_range is not None
    assert not [f.rule for f in healthy.findings if f.severity != "info"], [f.rule for f in healthy.findings]


def test_the_scripts_range_test_knows_which_of_its_steps_met_samples_it_had_trained_on(tmp_path):
    # As the replay's sweep: a loader of 5 batches a pass, reshuffled each epoch, comes round at the sixth step,
    # and a dip there may be memory (auditor/evidence.best_sweep_loss reads only new samples where it matters).
    script = tmp_path / "train.py"
    script.write_text(
        "import torch\nfrom torch import nn\nfrom torch.utils.data import DataLoader, TensorDataset\n"
        "torch.manual_seed(0)\nx, y = torch.randn(80, 6), torch.randint(0, 3, (80,))\n"
        "loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)\n"
        "model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 3))\n"
        "opt = torch.optim.SGD(model.parameters(), lr=0.05)\n"
        "for epoch in range(40):\n    for xb, yb in loader:\n        opt.zero_grad()\n"
        "        nn.functional.cross_entropy(model(xb), yb).backward()\n        opt.step()\n")
    report = audit_script(Script(str(script), []), steps=20, verify_fixes=False)
    unseen = report.evidence.lr_range["unseen"]
    assert len(unseen) == len(report.evidence.lr_range["losses"]) > 5
    assert unseen[:5] == [True] * 5 and not any(unseen[5:]), unseen


@pytest.mark.parametrize("paired", [True, False])
def test_audit_run_tells_labels_shuffled_apart_from_their_inputs(tmp_path, paired):
    # The script's own loss calls give the label rules their floor (the labels' entropy) and its samples where
    # the loader came round; before, `audit run` said "Loss plateaus: raise the learning rate" on these labels.
    shuffle = "perm = torch.randperm(640)\nx, y = x[perm], y[perm]\n" if paired else \
        "x = x[torch.randperm(640)]\ny = y[torch.randperm(640)]\n"
    script = tmp_path / "train.py"
    script.write_text(
        "import torch\nfrom torch import nn\nfrom torch.utils.data import DataLoader, TensorDataset\n"
        "torch.manual_seed(1234)\nproto = torch.randn(10, 64)\ny = torch.randint(0, 10, (640,))\n"
        "x = proto[y] + torch.randn(640, 64)\n" + shuffle +
        "loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, drop_last=True)\n"
        "model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))\n"
        "opt = torch.optim.Adam(model.parameters(), lr=1e-3)\n"
        "for epoch in range(30):\n    for xb, yb in loader:\n        opt.zero_grad()\n"
        "        nn.functional.cross_entropy(model(xb), yb).backward()\n        opt.step()\n")
    report = _paired_clean_else_labels(script, paired)
    assert len(report.evidence.labels) >= 10 and report.evidence.epoch_steps == 20
    assert all(f.fix_moot for f in report.findings if f.explained_by)


def _paired_clean_else_labels(script, paired: bool):
    """The script's audit: clean where its targets belong to their inputs, else headlined label-problems."""
    report = audit_script(Script(str(script), []), verify_fixes=False)
    if paired:
        assert not [f.rule for f in report.findings if f.severity != "info"], [f.title for f in report.findings]
    else:
        assert report.root_causes == ["label-problems"], [f.title for f in report.findings]
    return report


@pytest.mark.parametrize("paired", [True, False])
def test_audit_run_tells_regression_targets_shuffled_apart_from_their_inputs(tmp_path, paired):
    # The same for mean squared error: the targets' variance is the floor, a ridge regression on the raw inputs
    # the model-free test. Before, shuffled targets got "Loss plateaus" (the range test memorised its 16 batches).
    script = tmp_path / "train.py"
    script.write_text(
        "import torch\nfrom torch import nn\ntorch.manual_seed(0)\n"
        "x = torch.randn(1024, 16)\ny = x @ torch.randn(16, 1) + 0.1 * torch.randn(1024, 1)\n"
        + ("" if paired else "y = y[torch.randperm(1024)]\n") +
        "model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1))\n"
        "opt = torch.optim.Adam(model.parameters(), lr=1e-3)\n"
        "for epoch in range(50):\n    perm = torch.randperm(1024)\n    for i in range(0, 1024, 64):\n"
        "        idx = perm[i:i + 64]\n        loss = nn.functional.mse_loss(model(x[idx]), y[idx])\n"
        "        opt.zero_grad()\n        loss.backward()\n        opt.step()\n")
    report = _paired_clean_else_labels(script, paired)
    ev = report.evidence
    assert len(ev.targets) >= 10 and ev.epoch_steps == 16 and ev.label_signal["kind"] == "regression"
    assert paired or "ridge regression" in report.findings[0].diagnosis


def test_the_range_test_sees_the_loop_bug_and_its_fix_removes_the_finding():
    # Without zero_grad the sweep's gradients pile up too, so the test puts the rate far too high; the zero_grad
    # fix, re-run with the experiments, removes that finding: the loop bug is the cause, proven.
    report = _audit("missing_zero_grad")
    assert report.root_causes == ["missing-zero-grad"], report.root_causes
    lr = next((f for f in report.findings if f.rule == "lr-range"), None)
    assert lr is None or "missing-zero-grad" in lr.explained_by


TINY_FP16 = """
import torch
import torch.nn.functional as F
from torch import nn
torch.manual_seed(0)
x, y = torch.randint(0, 256, (1024,)), torch.randint(0, 256, (1024,))
model = nn.Sequential(nn.Embedding(256, 32), nn.ReLU(), nn.Linear(32, 256))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for step in range(1000):
    opt.zero_grad()
    with torch.autocast("cpu", dtype=torch.float16):
        loss = F.cross_entropy(model(x), y) / 4096
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
"""


def test_precision_fixes_are_applied_to_a_script_without_a_scaler(tmp_path):
    """A script with no GradScaler at all: the scaler fix adds one through the hooks (loss scaled at backward,
    unscaled before its clipping and the step), and the bf16 fix turns its fp16 autocast into bfloat16."""
    from auditor.probe.loopwatch import LoopFix
    from auditor.probe.script import run_script

    script = tmp_path / "train.py"
    script.write_text(TINY_FP16)
    target = Script(str(script))
    before = run_script(target, 12, 5, 0)
    assert before.amp["mode"] == "fp16" and before.amp["scaler"] is None
    assert before.amp["precision"]["grads"]["2"]["flushed"] > 0.5
    # A weakref proxy whose object is gone, as earlier code in the process may leave on the heap: the fix looks
    # for the script's optimizer among the heap's objects before its first step, and must not touch it.
    import weakref

    gone = type("Gone", (), {})()
    dead = weakref.proxy(gone)
    del gone
    scaled = run_script(target, 12, 5, 0, fix=LoopFix(scaler_init=2.0**16))
    del dead
    assert scaled.amp["scaler"] is not None and scaled.amp["precision"]["scale"] > 1
    assert scaled.amp["precision"]["grads"]["2"]["flushed"] < 0.01
    assert not any(c["scaled"] for c in scaled.loop["clips"])  # unscaled before the script's clipping
    assert abs(scaled.loss[0] - before.loss[0]) < 1e-6  # the loss as the script computed it, not scaled
    assert scaled.loss[-1] < before.loss[-1]  # gradients that were zero now train
    bf16 = run_script(target, 12, 5, 0, fix=LoopFix(amp="bf16"))
    assert bf16.amp["mode"] == "bf16"


WRITER = """
import sys
import torch
from torch import nn
if "--ask" in sys.argv:
    try:
        sys.stdin.readline()
    except OSError:  # pytest's stdin refuses reads
        pass
torch.manual_seed(0)
x = torch.randn(512, 8)
y = (x[:, 0] > 0).long()
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
with open("log.txt", "a") as log:
    for step in range(1000):
        idx = torch.randint(0, 512, (32,))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()  # no zero_grad: a fix to verify
        opt.step()
        log.write(f"{step} {loss.item()}\\n")
"""


def test_a_script_with_side_effects_is_not_run_again_unless_allowed(tmp_path, monkeypatch):
    """A first run that wrote files would write them again in every re-run (fixes, the LR range test): the
    report says so and nothing runs again, unless --rerun-writes allows it. One that read stdin is never re-run."""
    import tempfile

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # tmp_path stands for the user's folder
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "train.py"
    script.write_text(WRITER)
    report = audit_script(Script(str(script)), steps=30)
    assert len((tmp_path / "log.txt").read_text().splitlines()) == 29  # the first run's lines, no re-run's
    assert report.settings["verify_fixes"] is False and report.evidence.lr_range is None
    assert any("wrote log.txt" in n and "--rerun-writes" in n for n in report.evidence.probe.notes)
    fired = next(f for f in report.findings if f.rule == "missing-zero-grad")
    assert "outcome" not in (fired.verified or {})
    allowed = audit_script(Script(str(script)), steps=30, rerun_writes=True)
    assert allowed.evidence.lr_range is not None
    assert next(f for f in allowed.findings if f.rule == "missing-zero-grad").verified["outcome"] == "resolved"
    asks = audit_script(Script(str(script), ["--ask"]), steps=30, rerun_writes=True)
    assert asks.settings["verify_fixes"] is False
    assert any("read stdin" in n for n in asks.evidence.probe.notes)


STEPLR_SCRIPT = """
import torch
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.9)
for step in range(30):
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    sched.step()
"""


def test_a_warm_up_fix_ramps_a_script_s_rate_on_top_of_its_schedule(tmp_path):
    """The warm-up that loss-plateau verifies, applied to a script through the hooks: each step's rate scaled from a
    tenth up over its steps, and the script's own chainable StepLR going on from its own rates."""
    import numpy as np

    from auditor.probe.loopwatch import LoopFix
    from auditor.probe.script import run_script

    script = tmp_path / "train.py"
    script.write_text(STEPLR_SCRIPT)
    warmed = run_script(Script(str(script)), 12, 5, 0, fix=LoopFix(warmup=6))
    expected = [0.1 * 0.9**k * (0.1 + 0.9 * k / 6 if k < 6 else 1.0) for k in range(12)]
    assert np.allclose(warmed.lrs[:, 0], expected), warmed.lrs[:, 0]
    plain = run_script(Script(str(script)), 12, 5, 0)
    assert np.allclose(plain.lrs[:, 0], [0.1 * 0.9**k for k in range(12)])


@pytest.mark.parametrize("loop", ["full", "taken_once"])
def test_full_batch_training_is_information_and_a_batch_taken_once_a_warning(tmp_path, loop):
    """A GCN tutorial trains on the whole graph every step, with no DataLoader: that was the warning "the loader
    repeats one batch". A batch taken once from a DataLoader with next(iter(...)), outside the loop, still is."""
    data = ("from torch.utils.data import DataLoader, TensorDataset\n"
            "x, y = next(iter(DataLoader(TensorDataset(X, Y), batch_size=32, shuffle=True)))\n"
            if loop == "taken_once" else "x, y = X, Y\n")
    script = tmp_path / "train.py"
    script.write_text(
        "import torch\n"
        "from torch import nn\n"
        "torch.manual_seed(0)\n"
        "Y = torch.randint(0, 4, (600,)); X = torch.randn(600, 20) + nn.functional.one_hot(Y, 20).float()\n"
        + data +
        "model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 4))\n"
        "opt = torch.optim.Adam(model.parameters(), lr=0.01)\n"
        "for epoch in range(60):\n"
        "    opt.zero_grad()\n"
        "    nn.functional.cross_entropy(model(x), y).backward()\n"
        "    opt.step()\n")
    report = audit_script(Script(str(script)), steps=30, verify_fixes=False)
    found = [f for f in report.findings if f.rule == "repeated-batches"]
    assert len(found) == 1
    assert found[0].severity == ("info" if loop == "full" else "warning")
    assert bool(found[0].evidence.get("full_batch")) == (loop == "full")


_LOOP_HEAD = ("import torch\nfrom torch import nn\ntorch.manual_seed(0)\n"
              "Y = torch.randint(0, 4, (4096,)); X = torch.randn(4096, 20) + nn.functional.one_hot(Y, 20).float()\n"
              "model = nn.Sequential(nn.Linear(20, 32), nn.Tanh(), nn.Linear(32, 4))\n"
              "loss_of = lambda i: nn.functional.cross_entropy(model(X[i:i + 32]), Y[i:i + 32])\n")
_LOOPS = {
    # optimizer.step() slid into the logging block: nine backward passes in ten are cleared unused.
    "step_in_log": "opt = torch.optim.SGD(model.parameters(), lr=0.05)\n"
                   "for b, i in enumerate(range(0, 4096, 32)):\n    opt.zero_grad()\n    loss_of(i).backward()\n"
                   "    if b % 10 == 0:\n        print(b)\n        opt.step()\n",
    "accumulation": "opt = torch.optim.SGD(model.parameters(), lr=0.05)\n"
                    "for b, i in enumerate(range(0, 4096, 32)):\n    (loss_of(i) / 4).backward()\n"
                    "    if b % 4 == 3:\n        opt.step()\n        opt.zero_grad()\n",
    # L-BFGS re-evaluates its closure, zero_grad and backward included, inside one step.
    "lbfgs": "opt = torch.optim.LBFGS(model.parameters(), max_iter=5)\n"
             "def closure():\n    opt.zero_grad()\n    loss = loss_of(0)\n    loss.backward()\n    return loss\n"
             "for _ in range(60):\n    opt.step(closure)\n",
    # A GAN's second loss backpropagates into the first model too; those gradients are cleared by design.
    # Some GANs clear the discriminator's gradients from the generator's backward before the generator's step.
    "cleans_the_other": "head = nn.Linear(4, 1)\nopt = torch.optim.SGD(model.parameters(), lr=0.05)\n"
                        "opt_h = torch.optim.SGD(head.parameters(), lr=0.05)\n"
                        "for i in range(0, 4096, 32):\n    opt.zero_grad()\n    loss_of(i).backward()\n    opt.step()\n"
                        "    opt_h.zero_grad()\n    head(model(X[i:i + 32])).pow(2).mean().backward()\n"
                        "    opt.zero_grad()\n    opt_h.step()\n",
    # SAM (Foret et al. 2021): the first backward's gradients move the weights to their ascent point, then are
    # cleared for the second backward, whose gradients the step uses. As davda54/sam's optimizer class, whose
    # first_step() clears them itself (over p.data, so no version counter moves), and written into the loop.
    "sam_optimizer": "class SAM(torch.optim.SGD):\n    @torch.no_grad()\n    def first_step(self):\n"
                     "        for g in self.param_groups:\n            for p in g['params']:\n"
                     "                self.state[p]['e'] = 0.05 * p.grad / (p.grad.norm() + 1e-12)\n"
                     "                p.data.add_(self.state[p]['e'])\n        self.zero_grad()\n"
                     "    @torch.no_grad()\n    def second_step(self):\n        for g in self.param_groups:\n"
                     "            for p in g['params']:\n                p.data.sub_(self.state[p]['e'])\n"
                     "        self.step()\n        self.zero_grad()\n"
                     "opt = SAM(model.parameters(), lr=0.05)\n"
                     "for i in range(0, 4096, 32):\n    loss_of(i).backward()\n    opt.first_step()\n"
                     "    loss_of(i).backward()\n    opt.second_step()\n",
    "sam_in_loop": "opt = torch.optim.SGD(model.parameters(), lr=0.05)\n"
                   "for i in range(0, 4096, 32):\n    opt.zero_grad()\n    loss_of(i).backward()\n"
                   "    with torch.no_grad():\n"
                   "        e = [0.05 * p.grad / (p.grad.norm() + 1e-12) for p in model.parameters()]\n"
                   "        for p, d in zip(model.parameters(), e):\n            p.add_(d)\n"
                   "    opt.zero_grad()\n    loss_of(i).backward()\n    with torch.no_grad():\n"
                   "        for p, d in zip(model.parameters(), e):\n            p.sub_(d)\n    opt.step()\n",
    # The logging-`if` bug behind a wrapper whose zero_grad delegates (accelerate's AcceleratedOptimizer): the
    # wrapper's own zero_grad is no algorithm of its own, and those passes are still thrown away.
    "step_in_log_wrapped": "class Wrapped(torch.optim.Optimizer):\n    def __init__(self, inner):\n"
                           "        self.inner = inner\n        self.param_groups = inner.param_groups\n"
                           "        self.defaults, self.state = inner.defaults, inner.state\n"
                           "    def zero_grad(self, set_to_none=True):\n        self.inner.zero_grad(set_to_none)\n"
                           "    def step(self, closure=None):\n        return self.inner.step(closure)\n"
                           "opt = Wrapped(torch.optim.SGD(model.parameters(), lr=0.05))\n"
                           "for b, i in enumerate(range(0, 4096, 32)):\n    opt.zero_grad()\n"
                           "    loss_of(i).backward()\n    if b % 10 == 0:\n        opt.step()\n",
    "two_players": "head = nn.Linear(4, 1)\nopt = torch.optim.SGD(model.parameters(), lr=0.05)\n"
                   "opt_h = torch.optim.SGD(head.parameters(), lr=0.05)\n"
                   "for i in range(0, 4096, 32):\n    opt.zero_grad()\n    loss_of(i).backward()\n    opt.step()\n"
                   "    opt_h.zero_grad()\n    head(model(X[i:i + 32])).pow(2).mean().backward()\n    opt_h.step()\n",
}


def _audit_loop(tmp_path, body: str, steps: int = 30):
    """A script of _LOOP_HEAD and `body`, audited without verifying fixes."""
    script = tmp_path / "train.py"
    script.write_text(_LOOP_HEAD + body)
    return audit_script(Script(str(script)), steps=steps, verify_fixes=False)


@pytest.mark.parametrize("loop", sorted(_LOOPS))
def test_backward_passes_cleared_unused_are_found_and_accumulation_closures_players_and_sam_are_not(tmp_path, loop):
    bug = loop.startswith("step_in_log")
    report = _audit_loop(tmp_path, _LOOPS[loop], steps=8 if bug else 20)
    fired = {f.rule: f for f in report.findings}
    if loop != "cleans_the_other":
        assert (report.evidence.loop["discarded"] > 0) == bug
    assert ("grads-zeroed-before-step" in fired) == bug, [f.rule for f in report.findings]


@pytest.mark.parametrize("capped", [True, False])
def test_a_warm_up_without_its_cap_is_read_ahead_of_the_probe(tmp_path, capped):
    """LambdaLR(lambda step: step / warmup) is a warm-up that never stops: 5x the base rate at the probe's end,
    500x a hundred probes later, where the run will blow up. Its capped form is a warm-up."""
    factor = "min(1.0, (step + 1) / 20)" if capped else "(step + 1) / 20"
    script = tmp_path / "train.py"
    script.write_text(_LOOP_HEAD + "opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)\n"
                      f"sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: {factor})\n"
                      "for i in range(0, 4096, 32):\n    opt.zero_grad()\n    loss_of(i).backward()\n    opt.step()\n"
                      "    sched.step()\n")
    report = audit_script(Script(str(script)), steps=40, verify_fixes=False)
    found = [f for f in report.findings if f.rule == "lr-schedule"]
    if capped:
        assert not found
    else:
        assert len(found) == 1 and found[0].evidence["runaway"]
        assert found[0].evidence["factors"][-1] == pytest.approx(200.05)  # (4000 + 1) / 20


def test_a_batch_drawn_again_each_step_after_a_seed_reset_is_a_warning_not_full_batch_training(tmp_path):
    """torch.manual_seed inside the loop: the same random subset of the data every step, with no DataLoader. The
    tensor is new each step (full-batch training passes its data tensor itself), so it stays a warning."""
    script = tmp_path / "train.py"
    script.write_text(_LOOP_HEAD + "opt = torch.optim.Adam(model.parameters(), lr=0.01)\n"
                      "for step in range(60):\n    torch.manual_seed(0)\n    ix = torch.randint(0, 4096, (32,))\n"
                      "    opt.zero_grad()\n    nn.functional.cross_entropy(model(X[ix]), Y[ix]).backward()\n"
                      "    opt.step()\n")
    report = audit_script(Script(str(script)), steps=30, verify_fixes=False)
    found = [f for f in report.findings if f.rule == "repeated-batches"]
    assert [f.severity for f in found] == ["warning"]
    assert report.evidence.loop["loader_draws"] == 0 and report.evidence.loop["same_input_object"] == 0


def test_a_step_before_the_first_backward_leaves_a_gap_in_the_curve_not_a_nan_loss(tmp_path):
    """zero_grad(), step(), backward(): the first step comes before any loss, which read as "the loss is NaN at
    step 0, before any update" beside the real finding."""
    script = tmp_path / "train.py"
    script.write_text(_LOOP_HEAD + "opt = torch.optim.SGD(model.parameters(), lr=0.05)\n"
                      "for i in range(0, 4096, 32):\n    opt.zero_grad()\n    opt.step()\n    loss_of(i).backward()\n")
    report = audit_script(Script(str(script)), steps=30, verify_fixes=False)
    rules = {f.rule for f in report.findings}
    assert report.evidence.loop["no_loss"] == [0]
    assert "grads-zeroed-before-step" in rules and "loss-nan" not in rules


def test_a_scripts_own_warnings_are_evidence_with_its_line_and_step(tmp_path):
    """The replay recorded torch's warnings; a script's scrolled past on stderr (nn.Transformer's "mismatched
    key_padding_mask and attn_mask" in a seq2seq script). Now they are information with the line and step."""
    script = tmp_path / "train.py"
    script.write_text(_LOOP_HEAD + "import warnings\nopt = torch.optim.SGD(model.parameters(), lr=0.05)\n"
                      "for step, i in enumerate(range(0, 4096, 32)):\n"
                      "    logits = model(X[i:i + 32])\n"
                      "    if step == 3:\n        warnings.warn('odd batch', UserWarning)\n"
                      "    opt.zero_grad()\n    nn.functional.cross_entropy(logits, Y[i:i + 32]).backward()\n"
                      "    opt.step()\n")
    report = audit_script(Script(str(script)), steps=10, verify_fixes=False)
    found = [f for f in report.findings if f.rule == "torch-warnings"]
    assert len(found) == 1 and found[0].severity == "info"
    (w,) = found[0].evidence["warnings"]
    assert w["message"] == "odd batch" and w["step"] == 3 and w["where"] == "train.py:12"
    assert found[0].title.endswith("while your script ran")


def test_a_warning_a_library_raises_inside_itself_is_its_own_business(tmp_path, monkeypatch):
    """Lightning's FutureWarning about torch's pytree, raised in lightning's code, named typing_extensions.py as
    the user's line. A warning whose nearest caller outside torch is a library is left out; the script's own stay."""
    from auditor.probe import warnlog

    lib = tmp_path / "site"
    lib.mkdir()
    (lib / "noisy.py").write_text("import warnings\ndef call():\n    warnings.warn('library detail', FutureWarning)\n")
    monkeypatch.setattr(warnlog, "_LIBRARIES", warnlog._LIBRARIES + (str(lib.resolve()),))
    script = tmp_path / "train.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(lib)!r})\nimport noisy\nimport warnings\n" + _LOOP_HEAD +
                      "opt = torch.optim.SGD(model.parameters(), lr=0.05)\n"
                      "for i in range(0, 4096, 32):\n    noisy.call()\n    warnings.warn('mine', UserWarning)\n"
                      "    opt.zero_grad()\n    loss_of(i).backward()\n    opt.step()\n")
    report = audit_script(Script(str(script)), steps=5, verify_fixes=False)
    assert [w["message"] for w in report.evidence.warnings] == ["mine"]


def test_input_scale_is_judged_on_a_scripts_own_batches_and_leads():
    """audit run never computed the inputs' statistics: raw 0..255 pixels were reported as an initial loss of 33
    and dead units. It is measured on the script's first batches, and judged on the fixes' re-runs too (a re-run
    that did not measure it read as a fix that removed it)."""
    report = audit_script(Script(str(Path(__file__).resolve().parent / "corpus" / "scripts" / "raw_pixels.py")),
                          steps=30)
    stats = report.evidence.input_stats
    assert stats["max"] > 200 and stats["layer"] == "0"
    assert report.root_causes[0] == "input-scale", report.root_causes


@pytest.mark.parametrize("squashed", [True, False])
def test_a_sigmoid_before_bce_with_logits_in_the_loop_is_found(tmp_path, squashed):
    """torch.sigmoid(model(x)) fed to nn.BCEWithLogitsLoss in a script's loop was clean: the output's form was
    read only for losses with a class dimension. Binary logits are read too; real logits stay clean."""
    out = "torch.sigmoid(model(x[i:i + 100]))" if squashed else "model(x[i:i + 100])"
    script = tmp_path / "train.py"
    script.write_text("import torch\nfrom torch import nn\ntorch.manual_seed(0)\nx = torch.randn(6000, 20)\n"
                      "y = (x[:, :3].sum(1) > 0).float().unsqueeze(1)\n"
                      "model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 1))\n"
                      "crit = nn.BCEWithLogitsLoss()\nopt = torch.optim.Adam(model.parameters(), lr=1e-3)\n"
                      f"for i in range(0, 6000, 100):\n    loss = crit({out}, y[i:i + 100])\n"
                      "    opt.zero_grad()\n    loss.backward()\n    opt.step()\n")
    report = audit_script(Script(str(script)), steps=30, verify_fixes=False)
    assert ("output-not-logits" in {f.rule for f in report.findings}) == squashed


@pytest.mark.parametrize("setup", ["adam", "sgd_lr20"])
def test_clipping_that_binds_is_no_fault_where_the_update_does_not_suffer(tmp_path, setup):
    """The same clip at 0.01 under Adam (which divides the gradient by its own running scale, so a constant cut
    changes little), and under SGD at a rate high enough that rate x max_norm is a working step
    (pytorch/examples' word language model: clip 0.25 at lr 20): clipping binds on every step, the loss falls."""
    opt = "torch.optim.Adam(model.parameters(), lr=1e-3)" if setup == "adam" else \
        "torch.optim.SGD(model.parameters(), lr=20.0)"
    report = _audit_loop(tmp_path, f"opt = {opt}\n"
                         "for i in range(0, 4096, 32):\n    opt.zero_grad()\n    loss_of(i).backward()\n"
                         "    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.01)\n    opt.step()\n",
                         steps=60)
    clips = report.evidence.loop["clips"]
    assert sum(c["norm"] > c["max_norm"] for c in clips) >= 0.9 * len(clips)  # it binds
    assert "clip-too-tight" not in {f.rule for f in report.findings}, [f.rule for f in report.findings]


def test_a_loss_cut_off_from_the_model_is_named_not_read_as_a_misplaced_zero_grad(tmp_path):
    """A loss rebuilt from .item() (torch.tensor(value, requires_grad=True)) backpropagates into nothing: every
    .grad is None at step(), which was headlined "Gradients are cleared between backward() and step()" though no
    zero_grad() ran in between."""
    report = _audit_loop(tmp_path, "opt = torch.optim.Adam(model.parameters(), lr=1e-3)\n"
                         "for i in range(0, 4096, 32):\n    value = loss_of(i).item()\n"
                         "    loss = torch.tensor(value, requires_grad=True)\n"
                         "    opt.zero_grad()\n    loss.backward()\n    opt.step()\n")
    fired = {f.rule: f for f in report.findings}
    assert "grads-zeroed-before-step" not in fired, list(fired)
    assert fired["weights-not-updating"].severity == "error" and report.root_causes[0] == "weights-not-updating"


def test_a_collapsing_schedule_held_is_its_fix_though_the_short_probe_ends_higher():
    """ReduceLROnPlateau(patience=5) stepped on every batch's loss cut the rate to 1e-8 by step 45. Held at its
    first rate, the copy's loss at step 100 was higher (the short-horizon bias: a decayed rate looks better over a
    few steps), and the proven fix was reported as "made it worse"."""
    script = Path(__file__).resolve().parent / "corpus" / "scripts" / "plateau_per_batch.py"
    report = audit_script(Script(str(script)), steps=100)
    (f,) = [f for f in report.findings if f.rule == "lr-schedule"]
    assert f.verified["outcome"] in ("resolved", "improved"), f.verified
