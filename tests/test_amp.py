"""Mixed precision: the probe under autocast (bf16, fp16 with a GradScaler), its records, and the amp rules'
fixes verified on their samples."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import auditor
from auditor.errors import AuditError
from auditor.probe import amp as mixed


def _data(n=8, features=6, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, features, generator=g), torch.randint(0, classes, (16,), generator=g))
            for _ in range(n)]


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 3))


@pytest.mark.parametrize("mode", ["bf16", "fp16"])
def test_probe_runs_under_autocast_and_records_it(mode):
    seen = []

    class Watch(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _mlp()

        def forward(self, x):
            out = self.net(x)
            seen.append(out.dtype)
            return out

    report = auditor.audit(Watch(), _data(), steps=12, amp=mode, verify_fixes=False)
    # The replay's forwards (4 initial batches, then the steps) run under autocast; the experiments after it run
    # in float32, since they judge the model and the data, not the precision.
    assert set(seen[:16]) == {mixed.MODES[mode]}, seen[:16]
    ev = report.evidence
    assert report.probe.amp == mode and report.settings["amp"] == mode
    assert ev.amp["mode"] == mode
    assert (ev.amp["scaler"] is not None) == (mode == "fp16")
    if mode == "fp16":
        assert ev.amp["scales"][0] == 2.0**16 and ev.amp["precision"] is not None
    assert np.isfinite(ev.loss).all()
    # The statistics are of the true (unscaled) gradients: the same order as a float32 probe's.
    fp32 = auditor.audit(_mlp(), _data(), steps=12, verify_fixes=False).evidence
    ratio = ev.params[0].grad_norm[0] / fp32.params[0].grad_norm[0]
    assert 0.9 < ratio < 1.1, ratio


def test_early_skipped_steps_are_the_scaler_calibrating_not_a_finding():
    # A loss weighted by 1000: at the scaler's 2**16 the logit gradients pass 65504, so the first steps are
    # skipped while the scale halves, as in any fp16 job; then it trains.
    def loss_fn(out, y):
        return 1000 * F.cross_entropy(out, y)

    report = auditor.audit(_mlp(), _data(), loss_fn=loss_fn, steps=40, amp="fp16", verify_fixes=False)
    ev = report.evidence
    assert 1 <= len(ev.amp["skipped"]) <= 12, ev.amp["skipped"]
    assert max(ev.amp["skipped"]) < 20, ev.amp["skipped"]  # all while the scale settles
    assert ev.amp["scales"][-1] < 2.0**16
    rules = {f.rule for f in report.findings}
    assert not rules & {"amp-overflow", "loss-nan", "amp-underflow"}, rules
    # The weighted loss is large in float32 too (init-loss, exploding ratios say so), but the skipped steps'
    # inf gradients are not reported as NaN gradients.
    assert not [f for f in report.findings if f.title == "NaN or inf gradients"]


def test_a_training_step_with_its_own_autocast_keeps_working():
    def training_step(model, batch):
        x, y = batch
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        return F.cross_entropy(out.float(), y)

    report = auditor.audit(_mlp(), _data(), training_step=training_step, steps=10, verify_fixes=False)
    assert report.probe.steps_run == 10
    assert np.isfinite(report.evidence.loss).all()
    assert all(np.isfinite(p.grad_norm).all() for p in report.evidence.params)


def test_precision_check_counts_flushed_and_overflowing_values():
    lin = nn.Linear(4, 4)
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.bias.zero_()
    model = nn.Sequential(lin)
    batch = (torch.full((2, 4), 3e4), torch.zeros(2, 4))
    amp = mixed.Amp("fp16", torch.device("cpu"))
    out = mixed.precision(model, batch, lambda m, b: F.mse_loss(m(b[0]), b[1]), amp, 1.0, torch.device("cpu"))
    assert out["outputs"]["0"] == float("inf")  # 4 x 3e4 = 1.2e5 > 65504
    tiny = (torch.full((2, 4), 1e-3), torch.zeros(2, 4))
    out = mixed.precision(model, tiny, lambda m, b: 1e-9 * F.mse_loss(m(b[0]), b[1]), amp, 1.0,
                          torch.device("cpu"))
    assert out["grads"]["0"]["flushed"] == 1.0  # d(loss)/d(out) ~ 1e-12: zero in fp16, not in float32
    out = mixed.precision(model, tiny, lambda m, b: 1e-9 * F.mse_loss(m(b[0]), b[1]), amp, 2.0**16,
                          torch.device("cpu"))
    assert out["grads"]["0"]["flushed"] == 0.0


def test_bad_amp_settings_are_one_line_errors(write):
    with pytest.raises(AuditError, match="choose bf16 or fp16"):
        auditor.audit(_mlp(), _data(), steps=2, amp="fp8")
    from auditor.load import load_files

    model = write("model.py", "import torch\nmodel = torch.nn.Linear(6, 3)\namp = 'half'\n")
    loader = write("loader.py", "import torch\ntrain_loader = [(torch.randn(4, 6), torch.randint(0, 3, (4,)))]\n")
    with pytest.raises(AuditError, match="expected \"bf16\" or \"fp16\""):
        load_files(model, loader)


def test_amp_from_the_command_line_reaches_the_report(tmp_path, write):
    model = write("model.py", "import torch\ntorch.manual_seed(0)\n"
                              "model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), "
                              "torch.nn.Linear(16, 3))\n")
    loader = write("loader.py", "import torch\ng = torch.Generator().manual_seed(0)\n"
                                "train_loader = [(torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), "
                                "generator=g)) for _ in range(8)]\n")
    out = tmp_path / "report"
    run = subprocess.run([sys.executable, "-m", "auditor", str(model), "--data", str(loader), "--amp", "fp16",
                          "--steps", "20", "--out", str(out), "--format", "json", "-q"],
                         capture_output=True, text=True)
    assert run.returncode in (0, 1), run.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["probe"]["amp"] == "fp16" and report["settings"]["amp"] == "fp16"


def test_overflow_fix_bf16_is_verified_on_its_sample(audit_sample):
    report = audit_sample("amp_overflow")
    f = next(f for f in report.findings if f.rule == "amp-overflow")
    assert f.layers[0] == "0"  # the first Linear, fed the raw income column
    assert f.evidence["share"] == 1.0
    assert f.verified["outcome"] == "resolved" and f.verified["after"] == 0.0
    assert "bfloat16" in f.verified["fix"]
    # The other fix, fp16 everywhere but the overflowing layer, is verified on a copy of its own.
    (alt,) = f.verified["alternatives"]
    assert "layer 0 kept in float32" in alt["fix"]
    assert alt["outcome"] == "resolved" and alt["after"] < 0.5 * f.verified["before"], alt
    # Standardising the inputs removes the overflow too: the data is the root, fp16 its victim.
    assert "input-scale" in f.explained_by


def test_a_layer_kept_in_float32_runs_outside_autocast_and_the_model_is_given_back_as_it_was():
    model = _mlp()
    dtypes = {}
    for name in ("0", "2"):
        model.get_submodule(name).register_forward_hook(
            lambda m, a, out, name=name: dtypes.__setitem__(name, out.dtype))
    amp = mixed.Amp("fp16", torch.device("cpu"), float32=("0",))
    with amp.kept_float32(model), amp.autocast():
        model(torch.randn(4, 6))
    assert dtypes == {"0": torch.float32, "2": torch.float16}
    assert all("forward" not in m.__dict__ for m in model.modules())
    with pytest.raises(AuditError, match="no module 'nope' to keep in float32"), \
            mixed.Amp("fp16", torch.device("cpu"), float32=("nope",)).kept_float32(model):
        pass


def test_in_place_verification_of_a_float32_layer_leaves_the_users_model_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(16, 6, generator=g) * 3e4, torch.randint(0, 3, (16,), generator=g)) for _ in range(8)]
    report = auditor.audit(model, data, steps=20, amp="fp16", in_place=True)
    f = next(f for f in report.findings if f.rule == "amp-overflow")
    assert [a["fix"] for a in f.verified["alternatives"]] == ["layer 0 kept in float32, outside autocast"]
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_underflow_fix_grad_scaler_is_verified_on_its_sample(audit_sample):
    report = audit_sample("amp_underflow")
    f = next(f for f in report.findings if f.rule == "amp-underflow")
    assert f.layers[0] == "out"
    assert f.evidence["worst_share"] > 0.5
    assert f.verified["outcome"] == "resolved" and f.verified["after"] < 0.01
    assert "GradScaler" in f.verified["fix"]


# healthy_resnet and healthy_torch_transformer are clean in fp16 too (measured: no finding, at most 0.16% of a
# layer's gradients flushed), but fp16 matrix products are emulated on the CPU: minutes, not seconds.
@pytest.mark.parametrize(("sample", "mode"), [("healthy_mlp_adamw", "fp16"), ("healthy_convnet", "fp16"),
                                              ("healthy_gpt", "fp16"), ("healthy_regression", "fp16"),
                                              ("makemore_fixed", "fp16"), ("healthy_gpt", "bf16"),
                                              ("healthy_convnet", "bf16")])
def test_healthy_samples_stay_clean_in_mixed_precision(sample, mode):
    from auditor.api import audit_setup
    from auditor.load import load_files

    setup = load_files(f"samples/{sample}/model.py", f"samples/{sample}/loader.py")
    report = audit_setup(setup, amp=mode, verify_fixes=False)
    loud = [(f.rule, f.diagnosis) for f in report.findings if f.severity != "info"]
    assert not loud, f"false alarm on healthy {sample} in {mode}: {loud}"
    if mode == "fp16":
        from auditor.rules.amp_underflow import flushed

        worst = max(flushed(report.evidence).values())
        assert worst < 0.05 / 2, worst  # a margin of 2x under the rule's threshold
        assert not report.evidence.amp["skipped"]
