"""Each rule fires on the sample built to show it, and no rule warns on a healthy recipe."""

import numpy as np
import pytest

from auditor.engine import Finding, load_rules

TRIGGERS = {
    "init-loss": ["init_loss", "makemore_raw"],
    "saturated-units": ["saturated_units", "makemore_raw"],
    "dead-units": ["dead_units"],
    "vanishing-gradients": ["vanishing_gradients"],
    "exploding-gradients": ["exploding_gradients"],
    "update-ratio": ["update_ratio"],
    "grad-data-ratio": ["grad_data_ratio"],
    "loss-nan": ["loss_nan"],
    "loss-divergence": ["loss_divergence"],
    "loss-plateau": ["loss_plateau"],
    "loss-hockey-stick": ["loss_hockey_stick", "makemore_raw"],
    "loss-oscillation": ["loss_oscillation"],
    "output-not-logits": ["output_not_logits"],
    "weights-not-updating": ["weights_not_updating"],
    "batch-mixing": ["batch_mixing"],
    "input-scale": ["input_scale"],
    "overfit-one-batch": ["overfit_one_batch", "output_not_logits"],
    "input-independence": ["input_independence"],
    "lr-range": ["lr_range"],
    "init-scale": ["init_scale", "zero_init"],
    "bias-before-norm": ["bias_before_norm"],
    "batchnorm-small-batch": ["batchnorm_small_batch"],
    "dropout-before-output": ["dropout_before_output"],
    "grad-spikes": ["grad_spikes"],
    "overfitting": ["overfitting"],
    "label-problems": ["label_problems", "shuffled_labels"],
    "repeated-batches": ["repeated_batches"],
    "causal-leak": ["causal_leak"],
    "amp-overflow": ["amp_overflow"],
    "amp-underflow": ["amp_underflow"],
    "optimizer-config": ["optimizer_config"],
    "loss-broadcast": ["loss_broadcast"],
    "torch-warnings": ["torch_warnings"],
    "lr-schedule": ["lr_schedule"],
    "target-scale": ["target_scale"],
    "dropout-rate": ["dropout_rate"],
    "dropout-ignores-eval": ["dropout_ignores_eval"],
    "loss-reduction-sum": ["loss_reduction_sum"],
    "half-precision-weights": ["half_precision_weights"],
}
HEALTHY = ["makemore_fixed", "healthy_convnet", "healthy_resnet", "healthy_gpt", "healthy_torch_transformer",
           "healthy_regression", "healthy_mlp_adamw", "healthy_ddp", "healthy_ordinal"]


@pytest.mark.parametrize(("rule", "sample"), [(r, s) for r, samples in TRIGGERS.items() for s in samples])
def test_rule_fires_on_its_sample(audit_sample, rule, sample):
    report = audit_sample(sample)
    fired = [f for f in report.findings if f.rule == rule]
    assert fired, f"{rule} did not fire on {sample}: {[f.rule for f in report.findings]}"
    f = fired[0]
    # A biased layer before BatchNorm wastes a parameter but trains fine: information, not a warning. So is a
    # warning torch printed: the rules that measure its effect say how loud it is.
    assert f.severity in (("info",) if rule in ("bias-before-norm", "torch-warnings") else ("warning", "error"))
    assert f.diagnosis and f.fix and f.title


@pytest.mark.parametrize("sample", HEALTHY)
def test_healthy_sample_is_clean(audit_sample, sample):
    report = audit_sample(sample)
    loud = [(f.rule, f.diagnosis) for f in report.findings if f.severity != "info"]
    assert not loud, f"false alarm on healthy {sample}: {loud}"
    assert report.passed("warning")


def test_every_rule_has_a_trigger_sample():
    from test_distributed import TRIGGERS as DISTRIBUTED  # rules only a torchrun audit can check
    from test_scripts import TRIGGERS as SCRIPTS  # rules only a script's own loop can show

    assert set(load_rules()) == set(TRIGGERS) | set(DISTRIBUTED) | set(SCRIPTS)


def test_makemore_story(audit_sample):
    raw, fixed = audit_sample("makemore_raw"), audit_sample("makemore_fixed")
    assert 20 < raw.probe.initial_loss < 35  # the lecture's ~27
    assert abs(fixed.probe.initial_loss - 3.2958) < 0.1
    sat_raw = raw.to_dict()["metrics"]["activations"]
    sat_fixed = fixed.to_dict()["metrics"]["activations"]
    assert max(a["saturated"] for a in sat_raw.values()) > 0.6
    assert max(a["saturated"] for a in sat_fixed.values()) < 0.3


def test_update_ratio_both_branches_on_real_samples(audit_sample):
    low = next(f for f in audit_sample("update_ratio").findings if f.rule == "update-ratio")
    high = next(f for f in audit_sample("loss_oscillation").findings if f.rule == "update-ratio")
    assert "too low" in low.title and "too high" in high.title


def test_update_ratio_too_high_branch_via_threshold_override(audit_sample):
    # The GPT's median update ratio is ~10^-1.8; lowering the bar below it must trip the "too high" branch.
    report = audit_sample("healthy_gpt", overrides=(("update-ratio", "high", -2.5),))
    fired = [f for f in report.findings if f.rule == "update-ratio"]
    assert fired and "too high" in fired[0].title


def test_loss_nan_at_step_zero_names_the_data(audit_sample):
    f = next(f for f in audit_sample("loss_nan").findings if f.rule == "loss-nan")
    assert f.evidence["first_step"] == 0
    assert f.evidence["input_nonfinite"] > 0


def test_zero_init_parameters_never_give_infinite_ratios(audit_sample):
    # healthy_torch_transformer has a position embedding that starts at exactly zero.
    report = audit_sample("healthy_torch_transformer")
    pos = next(p for p in report.evidence.params if p.name == "pos")
    assert pos.zero_at_init
    import numpy as np
    assert not np.isinf(pos.update_data_ratio).any() and not np.isinf(pos.grad_data_ratio).any()
    assert "pos" not in [p.name for p in report.evidence.matrices()]


def _blobs(n=10):
    import torch
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(32, 20, generator=g), torch.randint(0, 5, (32,), generator=g)) for _ in range(n)]


def test_info_branches_unused_parameters_and_dropout_in_a_classifier():
    import torch
    from torch import nn

    import auditor

    class WithSpare(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 5))
            self.spare = nn.Linear(20, 5)  # never called in forward

        def forward(self, x):
            return self.body(x)

    torch.manual_seed(0)
    report = auditor.audit(WithSpare(), _blobs(), steps=20, verify_fixes=False)
    unused = next(f for f in report.findings if f.rule == "weights-not-updating")
    assert unused.severity == "info" and set(unused.layers) == {"spare.weight", "spare.bias"}
    drop = next(f for f in report.findings if f.rule == "dropout-before-output")
    assert drop.severity == "info" and drop.layers == ["body.2", "body.3"]  # a classifier: info, not a warning


def test_shuffled_labels_are_a_data_problem_with_no_learning_rate_advice(audit_sample):
    report = audit_sample("shuffled_labels")
    assert report.root_causes == ["label-problems"]
    finding = next(f for f in report.findings if f.rule == "label-problems")
    assert "do not depend on the inputs" in finding.title
    assert not [f for f in report.findings if f.advice and not f.explained_by]  # no root says "change the LR"
    assert "lr-range" not in {f.rule for f in report.findings}
    # What it explains keeps its evidence, but not its own fix ("raise the learning rate" under "no learning
    # rate fixes this"): on unrelated labels a change that lowers the loss only memorises faster.
    below = [f for f in report.findings if f.explained_by]
    assert below and all(f.fix_moot and "label-problems first" in f.fix_moot for f in below)
    assert finding.fix_moot is None
    md, html = report.to_markdown(), report.to_html()
    for f in below:
        section = md.split(f"`{f.rule}`: {f.title}")[1].split("\n### ")[0]
        assert f"**Fix.** {f.fix_moot.split(':')[0]}" in section
        assert "**Fix verified" not in section and "```python" not in section  # no code to paste for it
        assert ("tried below" in section) == ("after" in (f.verified or {}))
        assert f.fix_moot.split(":")[0] in html
    # And the pull-request comment of `audit diff` against a clean base: the root's fix, not theirs.
    import json

    from auditor import diff as differ

    head = json.loads(json.dumps(report.to_dict()))
    comment = differ.to_markdown(differ.compare(dict(head, findings=[], root_causes=[]), head))
    assert comment.count("**Fix.** Fix label-problems first") == len(below)
    assert not any(f.fix.split("\n\n")[0][:40] in comment for f in below)


def test_a_consequence_of_a_root_whose_fix_is_the_only_one_shows_its_own_verified_fix_as_no_fix():
    from auditor.causes import link

    root = Finding("label-problems", "error", "t", "", "", evidence={"sole_fix": "Fix label-problems first: why."})
    plateau = Finding("loss-plateau", "warning", "t", "", "raise the rate", onset=0,
                      verified={"fix": "lr x3", "outcome": "resolved", "after": 1.0, "before": 2.0})
    spikes = Finding("grad-spikes", "warning", "t", "", "clip", onset=0)
    roots = link([root, plateau, spikes], removed_by={"grad-spikes": set()})
    assert "label-problems" in roots and plateau.explained_by == ["label-problems"]
    assert plateau.fix_moot == "Fix label-problems first: why."
    assert spikes.fix_moot is None and root.fix_moot is None  # not below it: its own fix stands
    link([Finding("label-problems", "error", "t", "", ""), plateau])  # a root with no sole fix
    assert plateau.fix_moot is None


# The root cause each sample was built around: it must be the report's headline (root_causes[0]), or, where a
# sample carries a second independent problem by construction, at least one of its roots.
HEADLINE = {
    "batch_mixing": "batch-mixing", "batchnorm_small_batch": "batchnorm-small-batch",
    "bias_before_norm": "bias-before-norm", "causal_leak": "causal-leak", "dead_units": "dead-units",
    "dropout_before_output": "dropout-before-output", "exploding_gradients": "init-scale",
    "init_loss": "init-loss", "init_scale": "init-scale", "zero_init": "init-scale",
    "input_independence": "input-independence",
    "input_scale": "input-scale", "label_problems": "label-problems", "loss_nan": "loss-nan",
    "lr_range": "lr-range", "makemore_raw": "init-loss", "output_not_logits": "output-not-logits",
    "overfit_one_batch": "overfit-one-batch", "repeated_batches": "repeated-batches",
    "saturated_units": "saturated-units", "shuffled_labels": "label-problems",
    "vanishing_gradients": "vanishing-gradients", "weights_not_updating": "weights-not-updating",
    # The learning rate, named by the range test, explains these samples' symptoms.
    "loss_plateau": "lr-range", "update_ratio": "lr-range", "loss_divergence": "lr-range",
    "overfitting": "repeated-batches",
    # update-ratio's rate (0.043, for the lecture's 1e-3 ratio) ends this full-batch run higher than lr 16 does:
    # a fix that leaves training worse takes no credit for what it removed, and the oscillation itself leads.
    "loss_oscillation": "loss-oscillation",
    # fp16 overflows because one input column keeps its raw magnitude: standardising it is the one change.
    "amp_overflow": "input-scale", "amp_underflow": "amp-underflow",
    "target_scale": "target-scale", "dropout_rate": "dropout-rate",
}
AMONG_ROOTS = {"grad_data_ratio": "grad-data-ratio", "grad_spikes": "grad-spikes", "loss_hockey_stick": "init-loss"}


@pytest.mark.parametrize("sample", sorted(HEADLINE))
def test_sample_headline_is_its_root_cause(audit_sample, sample):
    report = audit_sample(sample)
    assert report.root_causes and report.root_causes[0] == HEADLINE[sample], report.root_causes


@pytest.mark.parametrize("sample", sorted(AMONG_ROOTS))
def test_sample_cause_is_a_root(audit_sample, sample):
    assert AMONG_ROOTS[sample] in audit_sample(sample).root_causes


def test_no_two_roots_advise_opposite_learning_rates(audit_sample):
    for sample in sorted(HEADLINE) + sorted(AMONG_ROOTS):
        roots = [f for f in audit_sample(sample).findings if not f.explained_by and f.advice]
        assert len({f.advice for f in roots}) <= 1, (sample, [(f.rule, f.advice) for f in roots])



def test_an_epoch_loop_that_never_sets_the_samplers_epoch_is_found_and_one_that_does_is_not(write):
    from pathlib import Path

    from auditor.api import audit_setup
    from auditor.load import load_files

    samples = Path(__file__).resolve().parents[1] / "samples"
    model = samples / "healthy_ddp" / "model.py"
    broken = samples / "set_epoch_forgotten" / "loader.py"
    report = audit_setup(load_files(model, broken))
    (f,) = [f for f in report.findings if f.rule == "rank-same-batches"]
    assert f.title == "Every epoch repeats the same order" and f.severity == "warning"
    assert f.verified == {"reason": "no mechanical fix: the fix is in the data pipeline and the training loop, "
                                    "which the auditor does not rewrite"}
    assert len(f.evidence["epochs"]) >= 3 and set(f.evidence["epochs"]) == {0}  # 32 batches an epoch here
    assert report.root_causes == ["rank-same-batches"]
    # The same loop with the call it forgot: every pass at its own epoch, nothing to report.
    text = broken.read_text().replace("# missing: sampler.set_epoch(_epoch)", "sampler.set_epoch(_epoch)")
    text = text.replace('str(Path(__file__).resolve().parents[1] / "data")', repr(str(samples / "data")))
    assert "sampler.set_epoch(_epoch)\n" in text and repr(str(samples / "data")) in text
    report = audit_setup(load_files(model, write("loader.py", text)), verify_fixes=False)
    assert not [f for f in report.findings if f.rule == "rank-same-batches"]


def test_a_dataloader_handed_over_gets_its_epochs_set_as_a_loop_would_and_back_as_it_was():
    import torch
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    import auditor

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(256, 6, generator=g), torch.randint(0, 3, (256,), generator=g))
    sampler = DistributedSampler(data, num_replicas=1, rank=0, seed=0)
    sampler.set_epoch(7)
    loader = DataLoader(data, batch_size=32, sampler=sampler, drop_last=True)  # 8 batches: 5 epochs a probe
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    report = auditor.audit(model, loader, steps=40, verify_fixes=False)
    assert not [f for f in report.findings if f.rule == "rank-same-batches"]
    assert sampler.epoch == 7
    assert torch.utils.data.DistributedSampler.__iter__.__qualname__ == "DistributedSampler.__iter__"


def test_adam_eps_is_the_root_not_the_learning_rate(audit_sample):
    # The rate's rules see eps's tiny steps too; they defer to the setting instead of advising a rate.
    report = audit_sample("optimizer_config")
    assert report.root_causes[0] == "optimizer-config"
    eps = next(f for f in report.findings if f.rule == "optimizer-config")
    assert eps.evidence["setting"] == "eps" and eps.evidence["eps_share"] > 0.9
    assert eps.verified and eps.verified["resolved"] and eps.verified["after"] > -3.5
    assert all("optimizer-config" in f.explained_by for f in report.findings if f.rule in ("lr-range", "update-ratio"))


@pytest.mark.parametrize(("make", "setting"), [
    (lambda p: __import__("torch").optim.SGD(p, lr=0.05, momentum=0.999), "momentum"),
    (lambda p: __import__("torch").optim.AdamW(p, lr=1e-2, weight_decay=5.0), "weight_decay"),
    (lambda p: __import__("torch").optim.AdamW(p, lr=1e-3, weight_decay=0.05), None),
    (lambda p: __import__("torch").optim.RMSprop(p, lr=2e-3, eps=0.0316, momentum=0.9, alpha=0.9), None),
])
def test_optimizer_settings_read_against_the_gradients(make, setting):
    import torch
    from torch import nn

    import auditor

    torch.manual_seed(0)
    x = torch.randn(1024, 20)
    y = (x @ torch.randn(20, 5)).argmax(1)
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 1024, 32)]
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))
    report = auditor.audit(model, batches, make_optimizer=make, steps=40, verify_fixes=False)
    found = [f.evidence["setting"] for f in report.findings if f.rule == "optimizer-config"]
    assert found == ([setting] if setting else []), [f.title for f in report.findings]


def test_a_large_eps_does_not_take_the_blame_for_a_rate_far_too_low():
    """RMSprop's eps=0.0316 (the MobileNetV3 recipe, chosen on purpose) at a rate a thousand times too low: eps
    shrinks each step some tens of times, the rate by far more. The rate leads; eps is named as its consequence."""
    import torch
    from torch import nn

    import auditor

    torch.manual_seed(0)
    x = torch.randn(1024, 20)
    y = (x @ torch.randn(20, 5)).argmax(1)
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 1024, 32)]
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))
    report = auditor.audit(model, batches, steps=40, verify_fixes=False, make_optimizer=lambda p: torch.optim.RMSprop(
        p, lr=2e-6, eps=0.0316, momentum=0.9, alpha=0.9))
    eps = next(f for f in report.findings if f.rule == "optimizer-config")
    assert eps.evidence["explains_rate"] is False and eps.severity == "warning"
    assert eps.evidence["update_log10_without_eps"] < -3.5
    assert report.root_causes[0] in ("lr-range", "update-ratio", "loss-plateau"), report.root_causes
    assert eps.explained_by, "the rate explains eps's small steps"


def test_loss_broadcast_is_the_root_and_its_fix_is_proven(audit_sample):
    report = audit_sample("loss_broadcast")
    assert report.root_causes[0] == "loss-broadcast"
    f = next(f for f in report.findings if f.rule == "loss-broadcast")
    assert f.evidence["input_shape"] == [64, 1] and f.evidence["target_shape"] == [64]
    assert f.evidence["broadcast_shape"] == [64, 64]
    assert f.verified["resolved"] and "overfit-one-batch" in f.explains


def test_torch_warnings_are_evidence_not_stderr_noise(audit_sample):
    import warnings

    from conftest import SAMPLES

    from auditor.api import audit_setup
    from auditor.load import load_files

    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        report = audit_setup(load_files(SAMPLES / "torch_warnings" / "model.py",
                                        SAMPLES / "torch_warnings" / "loader.py"), steps=20, verify_fixes=False)
    assert not [w for w in leaked if "Implicit dimension" in str(w.message)]
    (f,) = [f for f in report.findings if f.rule == "torch-warnings"]
    (w,) = f.evidence["warnings"]  # once, however many steps called it
    assert w["where"] == "model.py:24" and w["step"] == 0 and "softmax" in w["message"]
    # A warning the user silenced stays silent.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Implicit dimension")
        quiet = audit_setup(load_files(SAMPLES / "torch_warnings" / "model.py",
                                       SAMPLES / "torch_warnings" / "loader.py"), steps=20, verify_fixes=False)
    assert quiet.evidence.warnings == []
    # The broadcasting warning is loss-broadcast's, with its shapes; it is not listed twice.
    assert "torch-warnings" not in {f.rule for f in audit_sample("loss_broadcast").findings}


def test_a_residual_branch_closed_by_a_zero_gain_is_not_a_slow_layer():
    """torchvision's zero_init_residual, timm's ResNets: each block's last BatchNorm gain starts at 0 (Goyal et
    al. 2017), so the block's convs get almost no gradient until it grows. That is the gate, not a scale bug."""
    import torch
    from conftest import SAMPLES

    from auditor.api import audit_setup
    from auditor.load import load_files

    setup = load_files(SAMPLES / "healthy_resnet" / "model.py", SAMPLES / "healthy_resnet" / "loader.py")
    with torch.no_grad():
        for name, module in setup.model.named_modules():
            if name.endswith(".bn2"):
                module.weight.zero_()
    report = audit_setup(setup, steps=60, verify_fixes=False)
    gated = report.evidence.gated()
    assert "layer1.0.conv1.weight" in gated and "layer4.1.conv2.weight" in gated
    assert not {"conv1.weight", "fc.weight", "layer2.0.downsample.0.weight"} & gated  # the stem, head, shortcut
    assert "grad-data-ratio" not in [f.rule for f in report.findings]
    from auditor.evidence import depth_profile

    closed = {a.name for a in report.evidence.activations if a.grad_std[0] == 0}
    assert closed and not closed & set(depth_profile(report.evidence)[0])  # the branches' activations too


def test_no_gate_on_a_model_whose_gains_start_at_one(audit_sample):
    assert audit_sample("healthy_resnet").evidence.gated() == set()
    assert audit_sample("grad_data_ratio").evidence.gated() == set()


def test_a_first_step_made_large_by_the_initial_loss_is_not_advised_a_higher_rate():
    """MNASNet at 10 classes: a head that starts far too large makes the first gradient, and so the first update,
    huge, while the later steps sit at 1e-3. 'Lower the rate to' a rate above the one used contradicted itself;
    the fix touches the first steps alone (a warm-up) and the root is the initialisation."""
    import torch
    from conftest import SAMPLES

    from auditor.api import audit_setup
    from auditor.load import load_files

    setup = load_files(SAMPLES / "healthy_resnet" / "model.py", SAMPLES / "healthy_resnet" / "loader.py")
    with torch.no_grad():
        setup.model.fc.weight.mul_(30)
    report = audit_setup(setup, steps=60, verify_fixes=False)
    first = next(f for f in report.findings if f.rule == "update-ratio")
    assert first.evidence["first_log10"] > -0.8 and first.evidence["median_log10"] < -3.0
    assert first.evidence["suggested_lr"] is None and "LinearLR" in first.fix and "too high" not in first.title
    assert report.root_causes[0] == "init-loss"


def test_a_rate_too_high_from_the_first_step_on_is_advised_lower(audit_sample):
    f = next(f for f in audit_sample("lr_range").findings if f.rule == "update-ratio")
    assert f.evidence["first_log10"] > -0.8
    assert float(f.evidence["suggested_lr"]) < f.evidence["lr"] and "too high" in f.title


def test_squeeze_excitation_units_are_off_the_gradient_depth_profile():
    """MobileNetV3, EfficientNet, RegNetY: an SE unit's activation sees one pooled vector and gates the body
    through a sigmoid, its gradient on another scale by design. At a 1x1 last stage (a small input) only its
    class tells it from the body; it must not be an end of the depth profile that (vanishing|exploding)-gradients
    read."""
    import torch
    from torch import nn

    import auditor
    from auditor.evidence import depth_profile

    class SqueezeExcite(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.reduce, self.act, self.expand = nn.Conv2d(c, c // 4, 1), nn.ReLU(), nn.Conv2d(c // 4, c, 1)

        def forward(self, x):
            return x * torch.sigmoid(self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True)))))

    def block(c_in, c_out):
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU(), SqueezeExcite(c_out))

    torch.manual_seed(0)
    model = nn.Sequential(block(3, 16), block(16, 32), block(32, 32), block(32, 64), nn.Flatten(), nn.Linear(64, 10))
    x = torch.randn(256, 3, 16, 16)  # 16 -> 8 -> 4 -> 2 -> 1: the last block's SE sees as many positions as its body
    y = torch.randint(0, 10, (256,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)
    report = auditor.audit(model=model, loader=loader, steps=30, verify_fixes=False,
                           make_optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9))
    gating = {a.name for a in report.evidence.activations if a.gating}
    assert len(gating) == 8  # each SE's ReLU and its sigmoid gate
    names, _, source = depth_profile(report.evidence)
    assert source == "activation gradients" and len(names) >= 3 and set(names) <= {"0.2", "1.2", "2.2", "3.2"}


def test_regression_targets_shuffled_apart_from_their_inputs_are_found_by_their_variance():
    """Mean squared error has no label frequencies: a model that ignores its input scores the targets' variance
    (it predicts their mean), and regression targets shuffled apart from their inputs end there."""
    import sys
    from pathlib import Path

    import torch
    from torch import nn

    import auditor

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "samples" / "data"))
    from synthetic import Batches, regression

    X, Y = regression()
    shuffled = Y[torch.randperm(len(Y), generator=torch.Generator().manual_seed(1))]
    for targets, broken in ((shuffled, True), (Y, False)):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
        report = auditor.audit(model, Batches(X, targets, batch_size=64), verify_fixes=False,
                               make_optimizer=lambda p: torch.optim.Adam(p, lr=1e-3))
        found = {f.rule: f for f in report.findings}
        if broken:
            assert report.root_causes[:1] == ["label-problems"], report.root_causes
            assert "the variance of the targets" in found["label-problems"].diagnosis
            assert "lr-range" not in found
        else:
            assert not report.findings, [f.rule for f in report.findings]


def test_a_relu_on_the_output_is_named_with_its_own_fix_under_the_overfit_root(audit_sample):
    report = audit_sample("overfit_one_batch")  # nn.Linear(64, 1), nn.ReLU(): a regression that cannot go below 0
    dead = next(f for f in report.findings if f.rule == "dead-units")
    assert dead.evidence["output"] == "3" and dead.layers == ["3"]
    assert "Remove the activation after the output layer" in dead.fix and "kaiming" not in dead.fix
    assert report.root_causes == ["overfit-one-batch"] and dead.explained_by == ["overfit-one-batch"]


def test_labels_a_model_scores_itself_are_read_from_its_loss_call():
    """A Hugging Face style model takes `labels` in its batch dict and computes its own cross-entropy inside
    `training_step`: the labels the loss really sees are counted from that call, so shuffled labels are found
    there as on plain (inputs, targets) batches."""
    import sys
    from pathlib import Path

    import torch
    import torch.nn.functional as F
    from torch import nn

    import auditor

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "samples" / "data"))
    from synthetic import blobs

    class ScoresItself(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))

        def forward(self, features, labels):
            return F.cross_entropy(self.body(features), labels)

    X, Y = blobs()
    shuffled = Y[torch.randperm(len(Y), generator=torch.Generator().manual_seed(1))]
    for labels, broken in ((shuffled, True), (Y, False)):
        batches = [{"features": X[i:i + 32], "labels": labels[i:i + 32]} for i in range(0, len(X), 32)]
        torch.manual_seed(0)
        report = auditor.audit(ScoresItself(), batches, training_step=lambda m, b: m(**b), verify_fixes=False,
                               make_optimizer=lambda p: torch.optim.Adam(p, lr=1e-3))
        assert report.evidence.labels, "no label counts were read from the loss call"
        if broken:
            assert report.root_causes[:1] == ["label-problems"], report.root_causes
        else:
            assert not report.findings, [f.rule for f in report.findings]
    # The layer the loss was called on is the output layer, although the model returns only its loss: a head
    # left frozen there is found as on a model that returns its logits.
    model = ScoresItself()
    model.body[2].requires_grad_(False)
    report = auditor.audit(model, batches, training_step=lambda m, b: m(**b), verify_fixes=False, steps=30,
                           make_optimizer=lambda p: torch.optim.Adam(p, lr=1e-3))
    assert report.evidence.structure.output_producer == "body.2"
    frozen = next(f for f in report.findings if f.rule == "weights-not-updating")
    assert frozen.layers == ["body.2.weight", "body.2.bias"], frozen.layers


def test_weights_initialised_to_zero_are_the_root_and_a_zero_head_alone_is_not():
    """Zeroed weights are found from the parameters themselves, whatever the batch looks like (a dict of token
    ids, where no input can be zeroed to compare): all of them, or only the first layer the input meets. A head
    zero-initialised on purpose (timm's 'jax' init, DiT's final layer) trains: its input varies, so it is left
    alone."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    import auditor

    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(16, 32)
            self.body = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 4))

        def forward(self, ids, labels):
            return F.cross_entropy(self.body(self.emb(ids).mean(1)), labels)

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 16, (512, 6), generator=g)
    labels = ids[:, 0] % 4  # learnable from the first token
    batches = [{"ids": ids[i:i + 32], "labels": labels[i:i + 32]} for i in range(0, 512, 32)]

    def audit(model):
        return auditor.audit(model, batches, training_step=lambda m, b: m(**b), steps=40,
                             make_optimizer=lambda p: torch.optim.Adam(p, lr=3e-3))

    for zeroed in ("all", "first"):
        torch.manual_seed(0)
        model = Tokens()
        with torch.no_grad():
            for m in (model.modules() if zeroed == "all" else [model.emb]):
                if isinstance(m, nn.Linear | nn.Embedding):
                    m.weight.zero_()
        report = audit(model)
        assert report.root_causes[:1] == ["init-scale"], (zeroed, report.root_causes)
        f = next(f for f in report.findings if f.rule == "init-scale")
        assert f.severity == "error" and "emb.weight" in f.evidence["zero"], f.evidence
        assert f.verified and f.verified["outcome"] == "resolved", f.verified
    torch.manual_seed(0)
    model = Tokens()
    with torch.no_grad():
        model.body[2].weight.zero_()
    report = audit(model)
    assert not [f.rule for f in report.findings if f.severity != "info"], [f.rule for f in report.findings]


def test_a_branch_behind_a_small_layer_scale_is_not_a_gradient_explosion():
    """LayerScale (CaiT, ConvNeXt, EfficientFormerV2: a per-channel gain starting at 1e-6..1e-5) scales every gradient
    inside its residual branch by that gain: the gate's scale, not the depth's, and not an explosion towards an
    ungated stem."""
    import sys
    from pathlib import Path

    import torch
    from torch import nn

    import auditor

    class Scale(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

        def forward(self, x):
            return x * self.gamma

    class Block(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
            self.ls = Scale(dim)

        def forward(self, x):
            return x + self.ls(self.mlp(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Linear(20, 32), nn.GELU(), nn.Linear(32, 32), nn.GELU())
            self.blocks = nn.Sequential(*[Block(32) for _ in range(4)])
            self.head = nn.Linear(32, 5)

        def forward(self, x):
            return self.head(self.blocks(self.stem(x)))

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "samples" / "data"))
    from synthetic import blobs

    X, Y = blobs(n=1024, spread=1.0)
    torch.manual_seed(0)
    report = auditor.audit(Net(), [(X[i:i + 32], Y[i:i + 32]) for i in range(0, 1024, 32)], steps=60,
                           verify_fixes=False, make_optimizer=lambda p: torch.optim.AdamW(p, lr=2e-4))
    loud = [(f.rule, f.diagnosis) for f in report.findings if f.severity != "info"]
    assert not loud, loud


def test_overfit_one_batch_retries_cooler_before_calling_a_model_unable_to_fit(monkeypatch):
    """A rate too hot for the architecture (3e-3 on a Swin-V2 without warmup) is no proof that the model cannot
    express its targets: a second attempt at a tenth of it decides; a model that truly cannot (a ReLU on its
    output, for targets below zero) fails both."""
    import copy

    import torch
    import torch.nn.functional as F
    from torch import nn

    from auditor.probe import checks

    monkeypatch.setattr(checks, "OVERFIT_LR", 1.0)  # too hot for this regression MLP: only the retry at 0.1 fits
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(32, 20, generator=g), torch.randn(32, 1, generator=g))

    def attempt(tail):
        torch.manual_seed(0)
        init = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1), *tail)
        return checks.overfit_one_batch(lambda: copy.deepcopy(init), batch, lambda m, b: F.mse_loss(m(b[0]), b[1]))

    fits = attempt([])
    assert fits["rates"] == [1.0, 0.1] and fits["lr"] == 0.1, fits["rates"]
    assert min(fits["losses"]) < 0.01 * fits["losses"][0]
    stuck = attempt([nn.ReLU()])  # and a third attempt, at ten times the rate, fails as well
    assert stuck["rates"] == [1.0, 0.1, 10.0] and min(stuck["losses"]) > 0.2 * stuck["losses"][0], stuck["losses"][::25]


def test_a_loss_that_fell_in_its_first_steps_and_climbed_part_way_back_is_not_divergence(audit_sample):
    """torchvision's Swin-T at seed 1 fell from 2.36 to 0.01 within five steps and ended at 0.43: four times its
    first tenth's median, which the fast fall had pulled near zero, yet a fifth of its loss at initialisation."""
    import dataclasses

    import numpy as np
    from auditor.rules import loss_divergence

    from auditor.engine import load_rules, resolve_thresholds

    ev = audit_sample("loss_divergence").evidence
    t = resolve_thresholds(load_rules(), {})["loss-divergence"]
    assert list(loss_divergence.RULE.check(ev, t)), "the sample itself must still diverge"
    fast = np.concatenate([[2.36, 2.91, 0.23, 0.77, 0.37], np.full(45, 0.02), np.full(50, 0.43)])
    fell = dataclasses.replace(ev, loss=fast, probe=dataclasses.replace(ev.probe, initial_loss=2.36, start_loss=2.36))
    assert not list(loss_divergence.RULE.check(fell, t))
    rose = dataclasses.replace(fell, loss=np.concatenate([fast[:50], np.full(50, 6.0)]))
    assert list(loss_divergence.RULE.check(rose, t))


def test_inputs_that_predict_their_labels_keep_a_slow_model_from_being_called_label_blind(audit_sample):
    """VGG-11 without BatchNorm at torchvision's 0.01 per 256 learns nothing in 100 steps, and nothing the model
    showed told it from labels drawn apart from their inputs. The inputs themselves do: a nearest-class-mean
    classifier on them, scored on samples it was not fitted on, is far above the commonest class's share."""
    import dataclasses

    from auditor.rules import label_problems

    from auditor.engine import load_rules, resolve_thresholds

    ev = audit_sample("shuffled_labels").evidence
    assert ev.label_signal["p"] > 0.01 and ev.label_signal["accuracy"] <= ev.label_signal["majority"] + 0.05
    t = resolve_thresholds(load_rules(), {})["label-problems"]
    fired = list(label_problems.RULE.check(ev, t))
    assert fired and "nearest-class-mean classifier" in fired[0].diagnosis
    related = dict(ev.label_signal, correct=ev.label_signal["samples"], accuracy=1.0, p=1e-60)
    assert not list(label_problems.RULE.check(dataclasses.replace(ev, label_signal=related), t))


def test_the_inputs_label_test_separates_real_labels_from_shuffled_ones_and_counts_a_sample_once():
    import torch

    from auditor.probe.checks import inputs_predict_labels

    g = torch.Generator().manual_seed(0)
    proto = torch.randn(10, 3, 8, 8, generator=g)
    y = torch.randint(0, 10, (128,), generator=g)
    x = proto[y] + torch.randn(128, 3, 8, 8, generator=g)
    batches = lambda labels: [(x[i:i + 16], labels[i:i + 16]) for i in range(0, 128, 16)]  # noqa: E731
    real = inputs_predict_labels(batches(y))
    assert real["samples"] == 128 and real["accuracy"] > 0.9 and real["p"] < 1e-20
    shuffled = inputs_predict_labels(batches(y[torch.randperm(128, generator=g)]))
    assert shuffled["p"] > 1e-3
    # A loader that went round: the same 64 samples twice, each with its one random label. Counted twice, a
    # sample's twin would sit in the centroid it is scored against.
    noise, labels = torch.randn(64, 3, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
    again = torch.randperm(64, generator=g)
    twice = [(noise[i:i + 16], labels[i:i + 16]) for i in range(0, 64, 16)] + \
        [(noise[again[i:i + 16]], labels[again[i:i + 16]]) for i in range(0, 64, 16)]
    seen = inputs_predict_labels(twice)
    assert seen["samples"] == 64 and seen["p"] > 1e-3
    assert inputs_predict_labels([(torch.randn(16, 4), torch.rand(16))]) is None  # regression targets: no classes


@pytest.mark.parametrize("features", [16, 768])
def test_the_inputs_test_tells_regression_targets_of_their_inputs_from_shuffled_ones(features):
    # Mean squared error has no classes: a ridge regression on the raw inputs against the targets' mean, where
    # features are few and where they outnumber the samples (images: the dual form, shrunk as hard).
    from types import SimpleNamespace

    import torch

    from auditor.evidence import inputs_blind
    from auditor.probe.checks import inputs_predict_targets, inputs_signal

    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, features, generator=g)
    y = x[:, :8] @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(256, 1, generator=g)
    batches = lambda targets: [(x[i:i + 32], targets[i:i + 32]) for i in range(0, 256, 32)]  # noqa: E731
    real = inputs_predict_targets(batches(y))
    # Weaker where 768 features face 128 samples a half (z 3.6 against 12 at 16 features), never blind.
    assert real["samples"] == 256 and real["error"] < real["baseline"] and real["p"] < 1e-3, real
    assert not inputs_blind(SimpleNamespace(label_signal=real), 2.0)
    shuffled = inputs_predict_targets(batches(y[torch.randperm(256, generator=g)]))
    assert shuffled["p"] > 1e-3 and inputs_blind(SimpleNamespace(label_signal=shuffled), 2.0), shuffled
    assert inputs_signal(batches(y), "mse")["kind"] == "regression"
    assert inputs_signal(batches(y), "cross_entropy") is None  # float targets are not class labels


def test_inputs_with_unequal_classes_are_not_called_blind_for_scoring_below_the_commonest_class():
    """Nine samples in ten of one class, the two overlapping: a nearest-class-mean classifier spreads its guesses
    and scores below the 90% of always naming the commonest class on real labels, yet far above what guessing
    as often as it does would score; on shuffled labels it scores about that."""
    from types import SimpleNamespace

    import torch

    from auditor.evidence import inputs_blind
    from auditor.probe.checks import inputs_predict_labels

    g = torch.Generator().manual_seed(0)
    y = (torch.rand(400, generator=g) < 0.1).long()
    x = y[:, None] * 0.8 + torch.randn(400, 8, generator=g)
    batches = lambda labels: [(x[i:i + 40], labels[i:i + 40]) for i in range(0, 400, 40)]  # noqa: E731
    real = inputs_predict_labels(batches(y))
    assert real["accuracy"] < real["majority"], real  # the commonest class's share alone called these blind
    assert not inputs_blind(SimpleNamespace(label_signal=real), 2.0), real
    shuffled = inputs_predict_labels(batches(y[torch.randperm(400, generator=g)]))
    assert inputs_blind(SimpleNamespace(label_signal=shuffled), 2.0), shuffled
    assert shuffled["accuracy"] < real["accuracy"] - 0.1


def test_squeeze_excitation_gates_are_not_a_signal_whose_scale_grows_with_depth(audit_sample):
    """torchvision's MaxViT-T draws every conv at std 0.02: its squeeze-excitation gates' sigmoids sit at 0.5 with
    a spread that grows with each stage's width and pooled scale, 0.00045 at the first to 0.0063 at the last
    (14x, measured at 64 pixels). A gate sees one pooled vector per sample and scales the body: not a stage of
    the signal. init-scale judges the body's activations."""
    import dataclasses

    import numpy as np
    from auditor.rules import init_scale

    from auditor.engine import load_rules, resolve_thresholds

    ev = audit_sample("healthy_convnet").evidence
    t = resolve_thresholds(load_rules(), {})["init-scale"]
    assert not list(init_scale.RULE.check(ev, t))
    body = ev.activations[0]
    gates = [dataclasses.replace(body, name=f"block{i}.se.scale_activation", kind="sigmoid", gating=True,
                                 std=np.full_like(body.std, spread)) for i, spread in enumerate([4.5e-4, 1e-3, 6.3e-3])]
    with_gates = dataclasses.replace(ev, activations=list(ev.activations) + gates)
    assert not list(init_scale.RULE.check(with_gates, t))
    ungated = dataclasses.replace(ev, activations=list(ev.activations) + [dataclasses.replace(g, gating=False)
                                                                            for g in gates])
    assert [f.evidence["kind"] for f in init_scale.RULE.check(ungated, t)] == ["sigmoid"]


def test_shut_or_saturated_squeeze_excitation_gates_are_information(audit_sample):
    """torchvision's EfficientNet-B1..B4 from scratch on the GPU zoo sweep: their SE gates' sigmoids sat in the
    tails (41-93%) and shut on whole channels (26-85%) while the body learned, and saturated-units' fix verified
    worse. A gate near 0 or 1 is a gate doing its work: dead-units and saturated-units report it as information,
    and the same activation outside a gate still as an error."""
    import dataclasses

    import numpy as np
    from auditor.rules import dead_units, saturated_units

    from auditor.engine import load_rules, resolve_thresholds

    ev = audit_sample("healthy_convnet").evidence
    thresholds = resolve_thresholds(load_rules(), {})
    body = ev.activations[0]
    gate = dataclasses.replace(body, name="features.1.0.block.1.scale_activation", kind="sigmoid", gating=True,
                               saturated=np.full_like(body.std, 0.9), dead=np.full_like(body.std, 0.8))
    for gating in (True, False):
        changed = dataclasses.replace(ev, activations=list(ev.activations) + [dataclasses.replace(gate, gating=gating)])
        for rule in (dead_units.RULE, saturated_units.RULE):
            got = [(f.severity, tuple(f.layers)) for f in rule.check(changed, thresholds[rule.id])]
            assert got == [("info" if gating else "error", (gate.name,))], (rule.id, gating, got)


def test_an_overshoot_fraction_is_judged_with_its_uncertainty(audit_sample):
    """Nine measured steps: MaxViT-T learning well under AdamW (2.33 -> 1.08) overshot on 3 of them at one seed and
    fewer at the others; a period-2 cycle overshoots on half. One step more or fewer of nine must not decide."""
    import dataclasses

    import numpy as np
    from auditor.rules import loss_oscillation

    from auditor.engine import load_rules, resolve_thresholds

    ev = audit_sample("loss_oscillation").evidence
    t = resolve_thresholds(load_rules(), {})["loss-oscillation"]
    assert list(loss_oscillation.RULE.check(ev, t)), "the period-2 sample must still oscillate"
    before = np.full(9, 2.0)

    def overshooting(k):
        after = before * np.where(np.arange(9) < k, 1.03, 0.95)
        return dataclasses.replace(ev, loss=before, loss_after=after)

    assert not list(loss_oscillation.RULE.check(overshooting(3), t))
    assert list(loss_oscillation.RULE.check(overshooting(4), t))


def test_the_inputs_label_test_leaves_ignored_targets_out():
    import torch

    from auditor.probe.checks import inputs_predict_labels

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 12, generator=g), torch.full((64,), -100)
    assert inputs_predict_labels([(x, y)]) is None  # every target ignored: no classes to test
    y[:32] = torch.randint(0, 3, (32,), generator=g)
    assert inputs_predict_labels([(x, y)])["samples"] == 32


def test_units_killed_by_the_rate_during_training_get_the_rate_as_their_fix():
    """ReLUs alive at the first step (1% off) and dead by step 26 under SGD at 0.5: the initialisation was
    sound, the updates knocked them off the data. dead-units says so, advises a lower rate (not fan-in init) and
    proves it on a copy; units dead from the start keep the initialisation advice (the dead_units sample)."""
    import torch
    from torch import nn

    import auditor

    torch.manual_seed(0)
    x = torch.randn(1024, 20)
    y = (x @ torch.randn(20, 5)).argmax(1)
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 1024, 32)]
    model = nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 5))
    report = auditor.audit(model, batches, steps=60, make_optimizer=lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9))
    dead = next(f for f in report.findings if f.rule == "dead-units")
    assert dead.evidence["died_in_training"] and dead.onset > 0 and "learning rate" in dead.fix
    assert dead.verified["resolved"] and dead.verified["after"] < 0.25 < dead.verified["before"]
    assert report.root_causes[0] == "dead-units"


def test_a_rise_in_a_resnet_names_the_residual_gains_and_verifies_zeroing_them_first(audit_sample):
    """Deep ResNets at torchvision's default init (each block's last BatchNorm gain at 1) climbed at the zoo's
    probe: ResNet-152 at SGD 0.1 per 256 ended above ln 10 at six seeds in six (2.7-8.0), and learnt to 0.000-0.002
    with those gains at zero; a tenth of the rate only steadied it. The rise names the blocks and plans that fix
    first. Only a block's branch end is zeroed: not its first norm, not the shortcut's, not the stem's. Another
    net's rise (Swin-V2-T at AdamW 1e-3 without a warm-up) verifies a warm-up first, a tenth of the rate second."""
    import copy
    import dataclasses

    import numpy as np
    import torch
    from auditor.rules import loss_plateau
    from auditor.rules._residual import branch_ends

    from auditor.engine import load_rules, resolve_thresholds

    t = resolve_thresholds(load_rules(), {})["loss-plateau"]
    rising = np.linspace(3.6, 6.2, 100) * np.random.default_rng(0).uniform(0.9, 1.1, 100)
    ev = audit_sample("healthy_resnet", steps=30).evidence
    ends = branch_ends(ev)
    assert ends == [f"layer{i}.{j}.bn2" for i in range(1, 5) for j in range(2)], ends
    (f,) = loss_plateau.RULE.check(dataclasses.replace(ev, loss=rising), t)
    assert f.title == "Loss rises instead of falling" and f.layers == ends
    assert "8 residual blocks (layer1.0.bn2 ... layer4.1.bn2)" in f.diagnosis
    assert 'name.endswith((".bn2",))' in f.fix and "zero_init_residual=True" in f.fix
    fixed = copy.deepcopy(model := pytest.importorskip("torchvision").models.resnet18(num_classes=3))
    exec(f.fix.split("\n\n", 1)[1], {"model": fixed, "nn": torch.nn})  # the fix's code, as a user pastes it
    assert [n for n, p in fixed.named_parameters() if n.endswith("weight") and not p.any()] == \
        [f"layer{i}.{j}.bn2.weight" for i in range(1, 5) for j in range(2)] and model.layer1[0].bn2.weight.all()
    zero, rate = loss_plateau.RULE.plan_fix(ev, f)
    assert zero.param_edits == tuple((f"{e}.weight", "fill", 0.0) for e in ends)
    assert rate.lr == pytest.approx(ev.probe.lr / 10)
    # A convnet without residual blocks: a warm-up over half the probe first (the user's rate kept), the rate second.
    plain = audit_sample("healthy_convnet", steps=30).evidence
    assert branch_ends(plain) == []
    (g,) = loss_plateau.RULE.check(dataclasses.replace(plain, loss=rising), t)
    assert "residual" not in g.diagnosis and "LinearLR(optimizer, start_factor=0.1" in g.fix
    warm, rate = loss_plateau.RULE.plan_fix(plain, g)
    assert warm.warmup == 15 and warm.lr is None and not warm.param_edits
    assert rate.lr == pytest.approx(plain.probe.lr / 10)


def test_a_warm_up_does_not_pass_for_the_fix_of_a_rate_too_high_throughout(audit_sample):
    """The loss_oscillation sample (full-batch SGD at 16, past the stability limit): its loss rises. A warm-up over
    half the probe leaves the second half at the same rate, and the rise with it; a tenth of the rate resolves it.
    The warm-up thins out the overshooting steps on its copy, yet the overshoot stays the headline."""
    report = audit_sample("loss_oscillation")
    rise = next(f for f in report.findings if f.rule == "loss-plateau")
    assert rise.title == "Loss rises instead of falling"
    assert "warm-up" in rise.verified["fix"] and rise.verified["outcome"] == "no effect", rise.verified
    (lower,) = rise.verified["alternatives"]
    assert "a tenth" in lower["fix"] and lower["outcome"] == "resolved", lower
    assert report.root_causes[0] == "loss-oscillation"


@pytest.mark.parametrize("name, first, count", [
    ("resnet50", "layer1.0.bn3", 16),  # bn1, bn2, bn3 as attributes; `out += identity` in place
    ("regnet_x_400mf", "trunk_output.block1.block1-0.f.c.1", 22),  # the last of f.a, f.b, f.c; `proj(x) + f(x)`
    ("efficientnet_b0", None, 0),  # its residual branch ends in stochastic depth; a block's norm is the next's identity
    ("googlenet", None, 0),  # norms followed by F.relu and concatenated: no addition
    ("densenet121", None, 0),
])
def test_residual_branch_ends_are_read_from_the_additions(name, first, count):
    """A branch's end is the norm that ends a block's chain and is added to what came before it or to its own
    shortcut; the shortcut's norm (downsample.1, proj.1) and a block output that a later block adds to are not."""
    import warnings
    from types import SimpleNamespace

    import numpy as np
    import torch
    from auditor.rules._residual import branch_ends

    from auditor.probe.structure import StructureTracer

    torchvision = pytest.importorskip("torchvision")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GoogLeNet's note on its init
        model = torchvision.models.get_model(name, num_classes=10)
    with torch.no_grad(), StructureTracer(model) as tracer:
        model(torch.randn(2, 3, 32, 32))
    params = [SimpleNamespace(name=n, data_rms=np.array([float(p.abs().max())])) for n, p in model.named_parameters()]
    ends = branch_ends(SimpleNamespace(structure=tracer.structure, params=params))
    assert len(ends) == count and (ends[0] if ends else None) == first, ends
    assert not any("downsample" in e or "proj" in e for e in ends)


def test_an_in_place_residual_addition_is_recorded_with_its_operands():
    """torchvision's Bottleneck adds its shortcut in place (`out += identity`) and then calls its ReLU module on the
    same tensor: no module shows the addition, so the trace records it from the tensor operation, with the module
    that made each operand and when (the block's input, made by no module, as -1). Edges stay what fed what."""
    import torch
    from torch import nn

    from auditor.probe.structure import StructureTracer

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.relu = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True)
            self.bn2 = nn.BatchNorm2d(4)

        def forward(self, x):
            out = self.bn2(self.relu(self.bn(self.conv(x))))
            out += x
            return self.relu(out)

    block = Block()
    with torch.no_grad(), StructureTracer(block) as tracer:
        block(torch.randn(2, 4, 5, 5))
    s = tracer.structure
    assert s.added == [(("bn2", 3), ("", -1))], s.added
    assert ("conv", "bn") in s.edges and ("bn", "relu") in s.edges and ("relu", "bn2") in s.edges


def test_a_loss_that_climbs_short_of_divergence_is_not_called_a_plateau(audit_sample):
    """torchvision's ResNet-152 at seed 0 (SGD 0.1 per 256, batch 16): its loss swung between 2.1 and 33.9 and
    its medians rose from 3.66 to 6.23, under loss-divergence's 2x. It was reported as a plateau that had gone
    "-70%", pointing at vanishing gradients, which flatten a curve and do not raise it."""
    import dataclasses

    import numpy as np
    from auditor.rules import loss_plateau

    from auditor.engine import load_rules, resolve_thresholds

    ev = audit_sample("loss_divergence").evidence
    t = resolve_thresholds(load_rules(), {})["loss-plateau"]
    rng = np.random.default_rng(0)
    rising = dataclasses.replace(ev, loss=np.linspace(3.6, 6.2, 100) * rng.uniform(0.9, 1.1, 100))
    (f,) = loss_plateau.RULE.check(rising, t)
    assert f.title == "Loss rises instead of falling" and "+" in f.diagnosis and "vanish" not in f.diagnosis
    assert f.advice is None and f.evidence["drop"] < -0.5
    flat = dataclasses.replace(ev, loss=np.full(100, 2.3) * rng.uniform(0.99, 1.01, 100),
                               probe=dataclasses.replace(ev.probe, initial_loss=2.3, start_loss=2.3))
    (f,) = loss_plateau.RULE.check(flat, t)
    assert f.title == "Loss plateaus"
    # ResNeXt-101 at seed 1: 2.31 before any update, 3.75 -> 3.68 after its first steps. Flat, but well above
    # where it began: a rise too.
    stuck_high = dataclasses.replace(flat, loss=np.full(100, 3.7) * rng.uniform(0.99, 1.01, 100),
                                     probe=dataclasses.replace(ev.probe, initial_loss=2.31, start_loss=2.31))
    (f,) = loss_plateau.RULE.check(stuck_high, t)
    assert f.title == "Loss rises instead of falling" and "2.31 before any update" in f.diagnosis
    # ResNet-152 at seed 1: 2.5 before any update, spikes in the first fifth, and the last fifth back at 2.45. Its
    # medians fell 45%, and it was called clean; measured from where it began it never fell.
    spiky = np.r_[np.full(20, 4.8), np.full(60, 3.2), np.full(20, 2.45)] * rng.uniform(0.97, 1.03, 100)
    spiky[5] = 26.0
    back = dataclasses.replace(flat, loss=spiky, probe=dataclasses.replace(ev.probe, initial_loss=2.5, start_loss=2.5))
    (f,) = loss_plateau.RULE.check(back, t)
    assert f.title == "Loss rises instead of falling" and "fell back only to" in f.diagnosis, f.diagnosis
    assert "the highest 26" in f.diagnosis
    # The same start with a fall below where it began is learning.
    learnt = dataclasses.replace(back, loss=np.r_[spiky[:80], np.full(20, 1.9)])
    assert list(loss_plateau.RULE.check(learnt, t)) == []


def test_the_range_test_judges_labels_on_batches_its_copy_had_not_trained_on(audit_sample):
    """Labels unrelated to their inputs: a model that memorises them guesses wrong with confidence on the next
    batch, so at a brisk rate its loss on new batches ends far above their entropy, and the range test, once the
    loader comes round again, dips below it on samples its copy has seen (ResNet-18 at SGD 0.1 per 256, batches
    of 16: the sweep fell from 2.5 to 1.9 just as its batches came round; on new samples at the same rates it
    never went below 2.36). Where the raw inputs show no sign of carrying their labels, only the sweep's new
    samples count, and a rate that explains only the excess above the floor does not hide the labels. Where
    they might (no inputs test: a slow BERT whose sweep learns only at rates it reaches after coming round),
    the whole sweep counts as before."""
    import dataclasses

    import numpy as np
    from auditor.rules import label_problems, lr_range

    from auditor.engine import load_rules, resolve_thresholds
    from auditor.evidence import best_sweep_loss, fmt, input_free_loss

    ev = audit_sample("shuffled_labels").evidence
    rules = resolve_thresholds(load_rules(), {})
    t = rules["label-problems"]
    blind = dict(samples=120, correct=12, accuracy=0.1, majority=0.2, p=0.99)
    prior = input_free_loss(ev)[0]
    sweep = dict(ev.lr_range, losses=[1.02 * prior] * 20 + [0.7 * prior] * 20, lrs=list(np.geomspace(1e-6, 1, 40)),
                 unseen=[True] * 20 + [False] * 20)
    ev = dataclasses.replace(ev, lr_range=sweep, label_signal=blind)
    assert best_sweep_loss(ev, t.blind_z) == pytest.approx(1.02 * prior)
    fired = list(label_problems.RULE.check(ev, t))
    assert fired and "below " + fmt(1.02 * prior) + " on samples it had not trained on yet" in fired[0].diagnosis
    for signal in (None, dict(blind, correct=60, accuracy=0.5, p=1e-9)):
        unknown = dataclasses.replace(ev, label_signal=signal)
        assert best_sweep_loss(unknown, t.blind_z) == pytest.approx(0.7 * prior)
        assert not list(label_problems.RULE.check(unknown, t))
    # Ending 50% above the floor: the rate overshoots, yet the range test's rates reach the floor on new samples
    # and none goes below it. Far above it at every rate, something else holds the loss there.
    above = dataclasses.replace(ev, loss=np.where(np.isfinite(ev.loss), 1.5 * prior, ev.loss))
    assert list(label_problems.RULE.check(above, t))
    assert not list(label_problems.RULE.check(dataclasses.replace(above, label_signal=None), t))
    high = dict(sweep, losses=[1.5 * prior] * 40)
    assert not list(label_problems.RULE.check(dataclasses.replace(above, lr_range=high), t))
    # And lr-range, which the memorised dip gave a "good range" to, has none when only new samples count.
    ranged = dict(sweep, suggested=1e-5, good_low=1e-6, good_high=1e-4)
    assert not list(lr_range.RULE.check(dataclasses.replace(above, lr_range=ranged), rules["lr-range"]))
    assert list(lr_range.RULE.check(dataclasses.replace(above, lr_range=ranged, label_signal=None),
                                    rules["lr-range"]))
    # "No sign" is a bar the user sets: 1.8 standard errors above chance is blind at the default of 2, not at 1.
    near = dataclasses.replace(ev, label_signal=dict(blind, accuracy=0.15, chance=0.1))
    assert list(label_problems.RULE.check(near, t))
    strict = resolve_thresholds(load_rules(), {"label-problems": {"blind_z": 1.0}, "lr-range": {"blind_z": 1.0}})
    assert best_sweep_loss(near, strict["label-problems"].blind_z) == pytest.approx(0.7 * prior)
    assert not list(label_problems.RULE.check(near, strict["label-problems"]))


def test_a_model_that_mixes_its_batch_or_does_not_learn_is_not_taken_for_labels_unrelated_to_their_inputs(
        audit_sample):
    # An LSTM fed (batch, time) without batch_first learns nothing that carries across batches either (the
    # script of samples/scripts/batch_mixing: the inputs test weak, 45% against a commonest class of 52%).
    import dataclasses

    from auditor.rules import label_problems

    from auditor.engine import load_rules, resolve_thresholds

    ev = audit_sample("shuffled_labels").evidence
    t = resolve_thresholds(load_rules(), {})["label-problems"]
    assert list(label_problems.RULE.check(ev, t))
    mixed = dict(own=0.05, others_max=0.03, leaking=27, batch=32)
    assert not list(label_problems.RULE.check(dataclasses.replace(ev, batch_mixing=mixed), t))
    apart = dict(mixed, others_max=0.0, leaking=0)
    assert list(label_problems.RULE.check(dataclasses.replace(ev, batch_mixing=apart), t))
    # Nor a model whose steps do not move its weights (a script that clears its gradients before step()).
    still = [dataclasses.replace(p, update_rms=p.update_rms * 0) for p in ev.params]
    assert not list(label_problems.RULE.check(dataclasses.replace(ev, params=still), t))


def test_the_range_test_knows_which_of_its_batches_hold_samples_its_copy_trained_on():
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    import auditor

    torch.manual_seed(0)
    X, y = torch.randn(160, 8), torch.randint(0, 4, (160,))
    same_order = [(X[i:i + 16], y[i:i + 16]) for i in range(0, 160, 16)]  # 10 batches a pass
    reshuffled = DataLoader(TensorDataset(X, y), batch_size=16, shuffle=True)
    for loader, new in ((same_order, 10), (reshuffled, 5)):
        report = auditor.audit(nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4)), loader, steps=25,
                               verify_fixes=False, make_optimizer=lambda p: torch.optim.SGD(p, lr=0.01))
        unseen = report.evidence.lr_range["unseen"]
        assert len(unseen) == len(report.evidence.lr_range["losses"]) > 15
        # The probe read 25 batches, so the sweep starts 5 into a pass: in the same order it meets 10 batches it
        # has not trained on, reshuffled only the 5 left of that pass.
        assert unseen[:new] == [True] * new and not any(unseen[new:]), unseen


def test_a_rate_too_high_is_information_where_a_lower_rate_learns_less():
    """An MLP at Adam 0.05 on a task it can learn: the first step moves the weights by half their scale, above
    any healthy recipe's first step, yet the loss falls to a few percent of chance and the finding's own fix (the
    rate for 1e-3 updates, 17x lower) ends ten times higher on its copy. The counterfactual refutes the claim:
    information, with the evidence, and no rate advice in the graph. Ten times the rate, where the loss rises and
    the lower rate learns more, stays a fault."""
    import torch
    from torch import nn

    from auditor.api import audit_setup
    from auditor.load import UserSetup

    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 20, generator=g)
    y = (x @ torch.randn(20, 5, generator=g)).argmax(1)
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 512, 32)]

    def audit(lr):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))
        report = audit_setup(UserSetup(model=model, train_loader=batches),
                             optimizer=torch.optim.Adam(model.parameters(), lr=lr))
        return report, next(f for f in report.findings if f.rule == "update-ratio")

    report, first = audit(0.05)
    assert first.severity == "info" and first.advice is None and first.evidence["refuted"]
    assert first.evidence["first_log10"] > -0.8 and first.verified["outcome"] == "worse"
    assert first.verified["loss_after"] > 1.1 * first.verified["loss_before"]
    assert report.verdict == "clean" and report.causes_title != "What went wrong"
    report, first = audit(0.5)
    assert first.severity != "info" and first.advice == "lr-down" and "too high" in first.title


def _blob_batches(size: int, margin: int, width: float) -> list:
    """Autoencoder batches (input, input) of sparse images: two soft blobs on a black background, flattened."""
    import torch

    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    c = torch.rand(2048, 2, 2, generator=g) * (size - 2 * margin) + margin
    img = torch.exp(-((yy - c[..., 0, None, None]) ** 2 + (xx - c[..., 1, None, None]) ** 2) / width).amax(1)
    img = img.reshape(2048, -1)
    return [(img[i:i + 64], img[i:i + 64]) for i in range(0, 2048, 64)]


def test_a_summed_loss_that_halves_is_no_rise():
    """pytorch/examples' VAE: binary cross-entropy with reduction='sum', Adam 1e-3. The loss before any update
    is kept per element for the expectation (ln 2), but a rise is read against the curve, which is the sum
    (thousands): compared across the two units, a loss that halved read as a rise (the VAE: "from 0.703 before
    any update to 2.02e+04")."""
    import math

    import torch
    import torch.nn.functional as F
    from torch import nn

    from auditor.api import audit_setup
    from auditor.load import UserSetup

    batches = _blob_batches(12, 2, 4)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(144, 64), nn.Tanh(), nn.Linear(64, 144), nn.Sigmoid())
    report = audit_setup(UserSetup(model=model, train_loader=batches,
                                   loss_fn=lambda out, y: F.binary_cross_entropy(out, y, reduction="sum")),
                         optimizer=torch.optim.Adam(model.parameters(), lr=1e-3), verify_fixes=False)
    p, loss = report.probe, report.evidence.loss
    assert abs(p.initial_loss - math.log(2)) < 0.05 and abs(p.start_loss / loss[0] - 1) < 0.05
    assert loss[-10:].mean() < 0.6 * loss[:10].mean()
    assert not {"loss-plateau", "loss-divergence"} & {f.rule for f in report.findings}


def test_the_output_sigmoid_of_binary_cross_entropy_is_not_a_saturated_hidden_layer():
    """An autoencoder of sparse images (pytorch/examples' VAE decoder): the sigmoid that makes the probabilities
    for F.binary_cross_entropy sits at 0 on the background pixels, which is the prediction, not units that
    stopped passing gradient (BCE on probabilities cancels the sigmoid's derivative). It was an error."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from auditor.api import audit_setup
    from auditor.load import UserSetup

    batches = _blob_batches(16, 2, 2)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 256), nn.Sigmoid())
    report = audit_setup(UserSetup(model=model, train_loader=batches, loss_fn=F.binary_cross_entropy),
                         optimizer=torch.optim.Adam(model.parameters(), lr=1e-2), verify_fixes=False)
    out = next(a for a in report.evidence.activations if a.kind == "sigmoid")
    assert np.nanmedian(out.saturated) >= 0.35 and report.evidence.loss_call["squashed_by"] == "sigmoid"
    assert "saturated-units" not in {f.rule for f in report.findings}


def test_units_a_rate_killed_are_information_only_where_every_lower_rate_learns_less():
    """pytorch/examples' MNIST net in small (conv, max-pool, fc 128, dropout) under its Adadelta at lr 1.0: half
    of fc1 dies by step 13 while the loss falls to 4% of ln 10, and a tenth of the rate, which keeps more units,
    ends ten times higher. At lr 10 a tenth learns more: a fault, and so is update-ratio's first step, whatever its
    own, far lower rate did on its copy (higher on torch 2.14, lower on 2.6: the rate is refuted only where every
    lower-rate copy learnt less, which test_refuting_needs_every_lower_rate_copy_to_learn_less pins down)."""
    import torch
    from torch import nn

    from auditor.api import audit_setup
    from auditor.load import UserSetup

    g = torch.Generator().manual_seed(0)
    templates = (torch.rand(10, 1, 16, 16, generator=g) > 0.75).float()
    y = torch.randint(0, 10, (4096,), generator=g)
    x = ((templates[y] + 0.5 * torch.randn(4096, 1, 16, 16, generator=g)).clamp(0, 1) - 0.1307) / 0.3081
    batches = [(x[i:i + 64], y[i:i + 64]) for i in range(0, 4096, 64)]

    def audit(lr):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(784, 128),
                              nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10))
        report = audit_setup(UserSetup(model=model, train_loader=batches), steps=60,
                             optimizer=torch.optim.Adadelta(model.parameters(), lr=lr))
        return {f.rule: f for f in report.findings}

    found = audit(1.0)
    dead = found["dead-units"]
    assert dead.severity == "info" and dead.evidence["died_in_training"] and dead.evidence["refuted"]
    assert max(dead.evidence["dead_fraction"].values()) >= 0.4
    assert dead.verified["loss_after"] > 1.1 * dead.verified["loss_before"]
    found = audit(10.0)
    assert found["dead-units"].severity == "error" and found["dead-units"].verified["outcome"] == "improved"
    assert found["update-ratio"].severity != "info" and not found["update-ratio"].evidence.get("refuted")


def test_refuting_needs_every_lower_rate_copy_to_learn_less():
    """The verdict on the copies alone, on a run that learnt (2.3 -> 0.1): two findings say the rate is too high;
    while one's lower rate learnt more, neither is refuted, whatever the other's copy did; once both learnt less,
    both are information. A copy at a higher rate (another finding's, saying the rate is too low) is no witness."""
    import dataclasses

    import numpy as np

    from auditor.causes import LR_HIGH, LR_LOW
    from auditor.engine import Finding
    from auditor.evidence import Evidence, ProbeInfo
    from auditor.verify import refute

    info = ProbeInfo(steps=50, steps_run=50, device="cpu", loss_fn="cross_entropy", loss_fn_reason="",
                     loss_fn_default=False, optimizer="SGD", optimizer_default=False, seed=0, parameters=1, lr=1.0)
    ev = Evidence(probe=info, loss=np.linspace(2.3, 0.1, 50), loss_after=np.full(50, np.nan),
                  grad_norm=np.ones(50), params=[], activations=[])

    def finding(rule, after, advice=LR_HIGH, lr=0.1):
        return Finding(rule, "warning", f"{rule}: learning rate too high", "", "Lower the rate.", advice=advice,
                       verified={"fix": f"learning rate {lr}", "lr": lr, "loss_before": 0.1, "loss_after": after,
                                 "outcome": "worse" if after > 0.11 else "improved"})

    first, second = finding("update-ratio", 0.5), finding("dead-units", 0.05)
    refute([first, second], ev)
    assert first.severity == second.severity == "warning" and first.advice == LR_HIGH
    first, second = finding("update-ratio", 0.5), finding("dead-units", 0.3)
    higher = finding("loss-plateau", 0.01, advice=LR_LOW, lr=10.0)
    refute([first, second, higher], ev)
    assert first.severity == second.severity == "info" and first.advice is None and first.evidence["refuted"]
    assert second.title == "dead-units, and training copes" and "ended higher (0.3)" in second.diagnosis
    stuck = dataclasses.replace(ev, loss=np.linspace(2.3, 2.2, 50))  # a run that did not learn: nothing refuted
    first = finding("update-ratio", 0.5)
    refute([first], stuck)
    assert first.severity == "warning"


def test_targets_far_from_unit_scale_are_named_not_read_as_an_input_the_model_ignores(audit_sample):
    """Prices in dollars: the loss is the squared offset to the targets with or without the input, so zeroing
    the input proves nothing (it read "the model ignores its input" before target-scale); standardising the
    targets, on a copy, takes the loss from ~10x their variance to under it."""
    report = audit_sample("target_scale")
    rules = {f.rule: f for f in report.findings}
    assert "input-independence" not in rules
    f = rules["target-scale"]
    assert f.severity == "error" and f.evidence["target_mean"] > 1e5
    assert f.verified["outcome"] == "resolved" and f.verified["after"] < 1 < 5 < f.verified["before"]


def test_targets_in_the_thousands_under_sgd_lead_the_units_their_first_step_saturated():
    """A count in the thousands (bike rentals) under SGD 0.01: the loss falls to a quarter of the targets'
    variance, but the first step's gradient, as large as the targets, changed the weights by 10^1.4 of their
    scale and left the tanh layer saturated, which read as an initialisation fault ("scale the weights by
    gain/sqrt(fan_in)") on a default-initialised net. The targets' scale is the root, the saturation under it."""
    import torch
    from torch import nn

    from auditor.api import audit_setup
    from auditor.load import UserSetup

    g = torch.Generator().manual_seed(1)
    x = torch.randn(3200, 6, generator=g)
    y = 4500 + x @ torch.tensor([[900.0], [-300.0], [600.0], [200.0], [0.0], [100.0]]) + 300 * torch.randn(
        3200, 1, generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 1))
    report = audit_setup(UserSetup(model=model, train_loader=[(x[i:i + 50], y[i:i + 50]) for i in range(0, 3200, 50)],
                                   loss_fn=nn.functional.mse_loss),
                         optimizer=torch.optim.SGD(model.parameters(), lr=0.01), verify_fixes=False)
    rules = {f.rule: f for f in report.findings}
    assert report.root_causes[0] == "target-scale", report.root_causes
    assert rules["target-scale"].evidence["first_log10"] > 0
    assert "target-scale" in rules["saturated-units"].explained_by


def test_a_loader_whose_pass_is_one_batch_is_full_batch_training_not_a_repeated_batch():
    """DataLoader(batch_size=len(dataset)) without shuffling hands out the same batch every step by design."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from auditor.api import audit_setup
    from auditor.load import UserSetup

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (256,), generator=g)
    x = torch.randn(256, 20, generator=g) + nn.functional.one_hot(y, 20).float()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 4))
    report = audit_setup(UserSetup(model=model, train_loader=DataLoader(TensorDataset(x, y), batch_size=256)),
                         optimizer=torch.optim.Adam(model.parameters(), lr=1e-2), steps=30, verify_fixes=False)
    found = [f for f in report.findings if f.rule == "repeated-batches"]
    assert report.evidence.epoch_steps == 1
    assert [f.severity for f in found] == ["info"] and found[0].evidence["full_batch"]


def test_rises_on_batches_already_fitted_are_no_overshoot(audit_sample):
    """ViT-L/32 (AdamW 1e-3) learnt 2.30 -> 0.02 and got `loss-oscillation`: on 4 of 9 measured steps its own batch's
    loss rose by a median 133%, from about 0.01. A batch fitted to under 5% of the start is not judged."""
    import dataclasses

    import numpy as np
    from auditor.rules import loss_oscillation

    from auditor.engine import load_rules, resolve_thresholds

    ev = audit_sample("loss_oscillation").evidence
    t = resolve_thresholds(load_rules(), {})["loss-oscillation"]
    before = np.array([2.3, 0.6, 0.2, 0.05, 0.02, 0.012, 0.01, 0.011, 0.009])
    after = before * np.where(np.arange(9) >= 5, 2.3, 0.9)
    fitted = dataclasses.replace(ev, loss=before, loss_after=after,
                                 probe=dataclasses.replace(ev.probe, start_loss=2.3))
    assert not list(loss_oscillation.RULE.check(fitted, t))
    unfitted = dataclasses.replace(fitted, loss=before * 100, loss_after=after * 100)
    assert list(loss_oscillation.RULE.check(unfitted, t))


def test_dropout_that_drops_most_units_is_named_and_its_complement_proved(audit_sample):
    """A TensorFlow 1 port: keep_prob=0.9 became nn.Dropout(0.9). p replaced by 1 - p on a copy learns more. The
    information finding beside it (dropout feeding the output) is still there on the copy, at p=0.1, so it is no
    consequence (the counterfactual read every information finding as removed, since it counted only warnings
    and errors that stayed)."""
    report = audit_sample("dropout_rate")
    rules = {f.rule: f for f in report.findings}
    f = rules["dropout-rate"]
    assert f.evidence["p"] == 0.9 and len(f.evidence["dropouts"]) == 2
    assert f.verified["outcome"] == "resolved" and f.verified["loss_after"] < 0.8 * f.verified["loss_before"]
    assert rules["dropout-before-output"].severity == "info" and not rules["dropout-before-output"].explained_by


@pytest.mark.parametrize("normalised", [True, False])
def test_input_scale_reads_what_the_first_weight_layer_receives(normalised):
    """A tabular model of embeddings and numeric features, batches ((categorical, numeric), y) through a
    training_step: input-scale only read a plain (x, y) batch, so raw numeric features (mean 50, std up to 100)
    went unseen. It now reads the first Linear's input, where a BatchNorm over the raw features, inside the
    model, has standardised them (that model is healthy)."""
    import torch
    from torch import nn

    from auditor.api import audit_setup
    from auditor.load import UserSetup

    class Tab(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.bn = nn.Embedding(12, 6), nn.BatchNorm1d(4)
            self.mlp = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 3))

        def forward(self, cat, num):
            return self.mlp(torch.cat([self.emb(cat), self.bn(num) if normalised else num], 1))

    g = torch.Generator().manual_seed(0)
    cat = torch.randint(0, 12, (2048,), generator=g)
    num = torch.randn(2048, 4, generator=g) * torch.tensor([1.0, 10.0, 100.0, 5.0]) + 50
    y = (cat % 3 + (num[:, 1] > 50).long()) % 3
    batches = [((cat[i:i + 64], num[i:i + 64]), y[i:i + 64]) for i in range(0, 2048, 64)]
    torch.manual_seed(0)
    model = Tab()
    report = audit_setup(UserSetup(model=model, train_loader=batches,
                                   training_step=lambda m, b: nn.functional.cross_entropy(m(*b[0]), b[1])),
                         optimizer=torch.optim.AdamW(model.parameters(), lr=3e-3), steps=30, verify_fixes=False)
    stats = report.evidence.input_stats
    assert stats["layer"] == "mlp.0" and not stats["direct"]
    assert ("input-scale" in {f.rule for f in report.findings}) == (not normalised)


@pytest.mark.parametrize("data", ["sparse_images", "one_feature_in_dollars"])
def test_input_spread_is_a_feature_far_above_the_typical_one_not_rarely_lit_pixels(data):
    """Flattened images of soft blobs on a black background (pytorch/examples' VAE shape): border pixels are
    barely ever lit, their stds 1e9 below the centre's (the spread test read those extremes), yet every pixel is in
    the same units, and the largest reaches 3x the median pixel.
    One feature in dollars among standardised ones stands out from the median feature; that is the spread."""
    import torch
    from torch import nn

    from auditor.api import audit_setup
    from auditor.load import UserSetup

    if data == "sparse_images":
        batches = [(x, x) for x, _ in _blob_batches(28, 6, 4)]  # the stds' extremes 1e9 apart
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 784))
    else:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2048, 8, generator=g)
        y = x[:, :2].sum(1, keepdim=True)
        x[:, 3] = x[:, 3].abs() * 4000  # a price beside standardised features (its RMS ~4000)
        batches = [(x[i:i + 64], y[i:i + 64]) for i in range(0, 2048, 64)]
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 1))
    report = audit_setup(UserSetup(model=model, train_loader=batches, loss_fn=nn.functional.mse_loss),
                         optimizer=torch.optim.Adam(model.parameters(), lr=1e-3), steps=20, verify_fixes=False)
    fired = {f.rule: f for f in report.findings}
    if data == "sparse_images":
        assert "input-scale" not in fired
    else:
        assert fired["input-scale"].evidence["spread"] > 100


def test_a_spike_that_clipping_does_not_matter_for_is_information():
    """EfficientNet-B4 from scratch (SGD, batch 16) spiked 15x once; clipping at twice the median, on a copy,
    ended at 5.97 against 5.64: no harm the fix undoes. Wide ResNet-50's spike, whose clip took the end from
    1.85 to 1.17, stays a warning."""
    from auditor.engine import load_rules
    from auditor.verify import settle

    rules = load_rules()

    def spikes(after, outcome):
        f = Finding("grad-spikes", "warning", "Gradient spikes: a few steps dwarf the rest", "1 of 100 steps spiked.",
                    "clip", onset=24)
        f.verified = {"fix": "clip_grad_norm_(max_norm=37.8)", "loss_before": 5.64, "loss_after": after,
                      "outcome": outcome}
        return f

    harmless, harmful = spikes(5.97, "no effect"), spikes(1.17, "improved")
    settle([harmless, harmful], rules)
    assert harmless.severity == "info" and harmless.evidence["refuted"] and "5.97" in harmless.diagnosis
    assert harmful.severity == "warning" and "refuted" not in harmful.evidence


def test_a_loss_leaving_its_plateau_at_the_end_of_the_probe_is_information(audit_sample):
    """Skip-gram with word2vec's own init (output embeddings at zero, input ones at ±0.5/dim) under SparseAdam:
    4.159 for 60 steps, then 4.13, 4.09, 4.04 by step 100, and 0.24 after six epochs. It was "Loss plateaus:
    look for gradients that vanish", with AdamW as the fix (which takes no sparse gradients). A flat start whose
    last fifth falls fast enough to clear the bar over a probe is a slow start ending; flat throughout, or a
    steady fall too slow for the bar, stays a plateau."""
    import dataclasses

    import numpy as np
    from auditor.rules import loss_plateau

    from auditor.engine import load_rules, resolve_thresholds

    ev = audit_sample("loss_divergence").evidence
    ev = dataclasses.replace(ev, probe=dataclasses.replace(ev.probe, initial_loss=4.159, start_loss=4.159))
    t = resolve_thresholds(load_rules(), {})["loss-plateau"]
    rng = np.random.default_rng(0)
    steps = np.arange(100)
    onset = 4.159 - 0.002 * np.exp((steps - 20) / 20)  # 4.157 at step 20, 4.05 at step 99
    noise = rng.normal(0, 0.002, 100)
    (f,) = loss_plateau.RULE.check(dataclasses.replace(ev, loss=onset + noise), t)
    assert f.severity == "info" and f.evidence["leaving"] >= t.min_drop and "vanish" not in f.diagnosis
    for curve in (np.full(100, 4.159), 4.159 - 0.0008 * steps):  # flat; a steady fall of 2% per probe
        (g,) = loss_plateau.RULE.check(dataclasses.replace(ev, loss=curve + noise), t)
        assert g.severity == "warning" and g.title == "Loss plateaus", g.title


def test_dropout_drawn_in_eval_mode_is_found_where_it_ignores_the_flag_only():
    """F.dropout(x, p) and scaled_dot_product_attention(dropout_p=p) draw masks in eval mode; the same calls given
    the module's flag, nn.Dropout, and torch's own attention layers do not."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from auditor.probe.checks import eval_dropout

    class Net(nn.Module):
        def __init__(self, careful):
            super().__init__()
            self.careful, self.fc, self.drop = careful, nn.Linear(8, 8), nn.Dropout(0.5)
            self.mha = nn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True)

        def forward(self, x):
            flag = self.training if self.careful else True
            h = F.dropout(self.fc(x), 0.2, flag) + self.drop(x)
            q = h.view(2, 4, 2, 4).transpose(1, 2)
            a = F.scaled_dot_product_attention(q, q, q, dropout_p=0.1 if flag else 0.0)
            return a.transpose(1, 2).reshape(2, 4, 8) + self.mha(h.view(2, 4, 8), h.view(2, 4, 8), h.view(2, 4, 8))[0]

    x = torch.randn(8, 8)
    assert eval_dropout(Net(careful=True), lambda m: m(x)) == {"sites": {}}
    sites = eval_dropout(Net(careful=False), lambda m: m(x))["sites"]
    assert sorted(sites.values()) == [0.1, 0.2] and all(s.startswith("test_rules.py:") for s in sites), sites


@pytest.mark.parametrize("setup", ["sgd_mean_rate", "adam", "sgd_sum_rate", "sgd_mean"])
def test_a_summed_loss_is_named_where_sgd_takes_its_steps_at_the_means_rate(setup):
    """CrossEntropyLoss(reduction="sum") over 64 samples under SGD at a rate tuned for the mean: the step is 64x,
    units die, and the report led with the dead units. Adam (which divides the gradient by its own scale), SGD
    at the rate divided by the batch, and the mean itself are healthy."""
    import torch
    from torch import nn

    import auditor

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (2048,), generator=g)
    x = torch.randn(2048, 20, generator=g) + nn.functional.one_hot(y, 20).float() * 2
    batches = [(x[i:i + 64], y[i:i + 64]) for i in range(0, 2048, 64)]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 5))
    opt = {"adam": torch.optim.Adam(model.parameters(), lr=1e-3),
           "sgd_sum_rate": torch.optim.SGD(model.parameters(), lr=0.05 / 64, momentum=0.9)}.get(
        setup, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    loss = nn.CrossEntropyLoss(reduction="mean" if setup == "sgd_mean" else "sum")
    report = auditor.audit(model, batches, loss_fn=loss, optimizer=opt, steps=60, verify_fixes=False)
    fired = {f.rule for f in report.findings if f.severity != "info"}
    if setup == "sgd_mean_rate":
        assert report.root_causes[0] == "loss-reduction-sum", report.root_causes
    else:
        assert "loss-reduction-sum" not in fired, fired


def test_float16_weights_lead_what_they_set_off(audit_sample):
    """model.half() under Adam: the loss turned NaN at step 1 and the report said "lower the learning rate and clip
    the gradient norm". The float16 weights (and an eps of 0 in float16) are the root, the NaN their consequence."""
    report = audit_sample("half_precision_weights")
    assert report.root_causes == ["half-precision-weights"], report.root_causes
    (f,) = [f for f in report.findings if f.rule == "half-precision-weights"]
    assert f.severity == "error" and f.evidence["eps_is_zero"] and f.evidence["half_share"] == 1.0


def test_a_loss_function_that_leaves_autograd_is_an_error_in_the_replay():
    """loss_fn returning torch.tensor(F.mse_loss(out, y).item(), requires_grad=True): the replay trained nothing and
    said only "Parameters that never receive a gradient ... Fine if deliberate" (information)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    import auditor

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 10, generator=g)
    batches = [(x[i:i + 64], x[i:i + 64, :1] * 2) for i in range(0, 1024, 64)]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
    report = auditor.audit(model, batches, loss_fn=lambda o, y: torch.tensor(F.mse_loss(o, y).item(),
                                                                             requires_grad=True),
                           steps=30, verify_fixes=False)
    (f,) = [f for f in report.findings if f.rule == "weights-not-updating"]
    assert f.severity == "error" and f.evidence["disconnected"] and report.root_causes[0] == "weights-not-updating"
