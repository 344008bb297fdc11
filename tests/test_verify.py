"""Fix verification: the fix is applied to copies, the probe re-run, the effect recorded; nothing of the
caller's is touched."""

import json
from pathlib import Path

import torch
from click.testing import CliRunner
from torch import nn

import auditor
from auditor.cli import cli

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def test_makemore_fixes_are_verified(audit_sample):
    report = audit_sample("makemore_raw")
    by_rule = {f.rule: f.verified for f in report.findings}
    init, sat = by_rule["init-loss"], by_rule["saturated-units"]
    assert init["before"] > 20 and abs(init["after"] - 3.2958) < 0.3 and init["resolved"] is True
    assert sat["before"] > 0.6 and sat["after"] < 0.3 and sat["resolved"] is True
    assert "reason" in by_rule["loss-hockey-stick"]  # not mechanical: says why
    assert report.to_markdown().count("**Fix verified: the finding is gone**") == 2


def test_every_finding_says_verified_or_why_not(tmp_path):
    r = CliRunner().invoke(cli, [str(SAMPLES / "input_scale" / "model.py"), "--data",
                                 str(SAMPLES / "input_scale" / "loader.py"), "--out", str(tmp_path),
                                 "--format", "json"])
    assert r.exit_code == 1, r.output
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["verify_seconds"] > 0
    for f in data["findings"]:
        v = f["verified"]
        assert ("metric" in v and "before" in v and "after" in v) or v.get("reason"), f
    scale = next(f for f in data["findings"] if f["rule"] == "input-scale")["verified"]
    assert scale["before"] > 100 and abs(scale["after"] - 1) < 0.05
    assert "fix verified" in r.output


def test_no_verify_fixes(tmp_path):
    r = CliRunner().invoke(cli, [str(SAMPLES / "init_loss" / "model.py"), "--data",
                                 str(SAMPLES / "init_loss" / "loader.py"), "--out", str(tmp_path), "--format", "json",
                                 "--no-verify-fixes"])
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["verify_seconds"] is None
    assert all(f["verified"] is None for f in data["findings"]) and data["findings"]
    assert "fix verified" not in r.output


def test_verification_leaves_the_callers_objects_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 5))
    with torch.no_grad():
        model[0].weight.mul_(30)  # saturated tanh and a high initial loss: fixes that edit the model
        model[2].weight.mul_(30)
    # Too low: a fix that changes the optimizer. Two groups: the fixed run must keep them, as the caller's run did.
    opt = torch.optim.SGD([{"params": model[0].parameters()}, {"params": model[2].parameters()}], lr=1e-5)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    opt_state = json.dumps(opt.state_dict()["param_groups"])
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(32, 20, generator=g), torch.randint(0, 5, (32,), generator=g)) for _ in range(20)]
    report = auditor.audit(model, data, optimizer=opt, steps=40)
    verified = [f for f in report.findings if f.verified and "after" in f.verified]
    assert {f.rule for f in verified} >= {"init-loss", "saturated-units"}
    assert all("2 groups" in f.after.probe.optimizer for f in verified)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert json.dumps(opt.state_dict()["param_groups"]) == opt_state and not opt.state


def test_information_is_not_verified_and_explains_nothing():
    """A squeeze-excitation gate's saturated sigmoid is information (saturated-units says so); its rule has a fix
    for the body's saturation, which must not be re-probed for the gate: on EfficientNet-B2 that made the gate a
    cause of the grad spikes in the root-cause graph."""
    torch.manual_seed(0)

    class SqueezeExcite(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.reduce, self.act, self.expand = nn.Conv2d(c, 4, 1), nn.ReLU(), nn.Conv2d(4, c, 1)
            with torch.no_grad():
                self.expand.weight.mul_(40)  # the gate starts in its tails

        def forward(self, x):
            return x * torch.sigmoid(self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True)))))

    model = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.ReLU(), SqueezeExcite(16),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
    x = torch.randn(256, 3, 8, 8)
    y = torch.randint(0, 4, (256,))
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)]
    report = auditor.audit(model, batches, steps=30, make_optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9))
    gate = next(f for f in report.findings if f.rule == "saturated-units")
    assert gate.severity == "info" and "information" in gate.verified["reason"]
    assert not gate.explains
