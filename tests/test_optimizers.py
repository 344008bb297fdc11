"""Every optimizer a user can hand over, bare, wrapped by a trainer or with a scheduler, goes through the API
and comes back exactly as it was, while the probe trains a faithful copy of it."""

import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import auditor


def _optimizer_classes():
    return sorted((c for _, c in inspect.getmembers(torch.optim, inspect.isclass)
                   if issubclass(c, torch.optim.Optimizer) and c is not torch.optim.Optimizer),
                  key=lambda c: c.__name__)


class Tokens(nn.Module):
    """Sparse gradients, for SparseAdam."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 3, sparse=True)

    def forward(self, x):
        return self.emb(x).mean(1)


def _setup(cls):
    """A model and batches the optimizer class can train, and its constructor's keywords."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    if cls.__name__ == "SparseAdam":
        model = Tokens()
        data = [(torch.randint(0, 20, (16, 4), generator=g), torch.randint(0, 3, (16,), generator=g))
                for _ in range(6)]
    else:
        bias = cls.__name__ != "Muon"  # Muon orthogonalises matrices only
        model = nn.Sequential(nn.Linear(6, 16, bias=bias), nn.Tanh(), nn.Linear(16, 3, bias=bias))
        data = [(torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(6)]
    # Settings under which each keeps state (plain SGD keeps none; LBFGS kept short for speed).
    kwargs = {"LBFGS": {"lr": 0.05, "max_iter": 3}, "SGD": {"lr": 0.1, "momentum": 0.9}}.get(cls.__name__, {})
    return model, data, kwargs


def _caller_steps(model, opt, data, n=3):
    """A few of the caller's own steps, so the optimizer has state to lose."""
    for x, y in data[:n]:
        def closure(x=x, y=y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss
        opt.step(closure)


def _snapshot(obj):
    """A deep, comparable copy of a state_dict (tensors cloned)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _snapshot(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_snapshot(v) for v in obj)
    return obj


def _assert_same(a, b, where="state_dict"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("cls", _optimizer_classes(), ids=lambda c: c.__name__)
def test_every_torch_optimizer_passes_through_the_api_unchanged(cls):
    model, data, kwargs = _setup(cls)
    opt = cls(model.parameters(), **kwargs)
    _caller_steps(model, opt, data)
    state_before = _snapshot(opt.state_dict())
    assert state_before["state"], f"{cls.__name__} kept no state from the caller's steps"
    params_before = _snapshot(model.state_dict())

    report = auditor.audit(model, data, optimizer=opt, steps=6, verify_fixes=False)

    assert report.probe.steps_run == 6
    assert report.probe.optimizer.startswith(f"{cls.__name__}(")
    assert not report.probe.optimizer_default
    _assert_same(state_before, opt.state_dict())
    _assert_same(params_before, model.state_dict(), "model")
    # The copy really trained: its weights moved between the first and last step.
    moved = [p for p in report.evidence.params if np.nanmax(p.update_data_ratio) > 0]
    assert moved, f"the probe's {cls.__name__} did not update any parameter"


def test_the_probe_copy_continues_from_the_callers_state():
    # SGD with momentum: with lr 0 for the probe's own gradients impossible to tell apart, so instead compare the
    # first probe update with one taken by hand from a copy of the caller's state on the same batch.
    torch.manual_seed(0)
    model, data, _ = _setup(torch.optim.SGD)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _caller_steps(model, opt, data)
    twin = _snapshot(model.state_dict())
    twin_model, _, _ = _setup(torch.optim.SGD)
    twin_model.load_state_dict(twin)
    twin_opt = torch.optim.SGD(twin_model.parameters(), lr=0.1, momentum=0.9)
    twin_opt.load_state_dict(_snapshot(opt.state_dict()))
    w0 = twin_model[0].weight.detach().clone()
    twin_opt.zero_grad()
    F.cross_entropy(twin_model(data[0][0]), data[0][1]).backward()
    twin_opt.step()
    expected = ((twin_model[0].weight - w0).norm() / w0.norm()).item()

    ev = auditor.audit(model, data, optimizer=opt, steps=2, stats_every=1, verify_fixes=False).evidence
    first = next(p for p in ev.params if p.name == "0.weight")
    assert first.update_data_ratio[0] == pytest.approx(expected, rel=1e-5)


def test_adamw_from_the_readme_example():
    # The report that opened this: AdamW's defaults gained a key its constructor does not take back.
    torch.manual_seed(0)
    model, data, _ = _setup(torch.optim.AdamW)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    report = auditor.audit(model, data, optimizer=opt, steps=5, verify_fixes=False)
    assert report.probe.optimizer.startswith("AdamW(lr=0.001")


def test_a_scheduler_is_applied_in_the_probe_and_left_untouched():
    torch.manual_seed(0)
    model, data, _ = _setup(torch.optim.SGD)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # After the probe's first step the rate drops to 0: no later step may move a weight.
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.0)
    _caller_steps(model, opt, data, n=0)
    sched_before = _snapshot(sched.state_dict())
    opt_before = _snapshot(opt.state_dict())
    params_before = _snapshot(model.state_dict())

    report = auditor.audit(model, data, optimizer=opt, scheduler=sched, steps=6, stats_every=1, verify_fixes=False)

    ratios = np.array([p.update_data_ratio for p in report.evidence.params if p.role == "weight"])
    assert (ratios[:, 0] > 0).all() and (ratios[:, 1:] == 0).all()
    assert any("StepLR" in n for n in report.probe.notes)
    _assert_same(sched_before, sched.state_dict(), "scheduler")
    _assert_same(opt_before, opt.state_dict(), "optimizer")
    _assert_same(params_before, model.state_dict(), "model")
    assert opt.param_groups[0]["lr"] == 0.1


def test_reduce_on_plateau_is_noted_not_stepped():
    model, data, _ = _setup(torch.optim.SGD)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
    report = auditor.audit(model, data, optimizer=opt, scheduler=sched, steps=3, verify_fixes=False)
    assert any("ReduceLROnPlateau" in n and "validation metric" in n for n in report.probe.notes)


def test_a_scheduler_on_another_optimizer_is_a_clear_error():
    model, data, _ = _setup(torch.optim.SGD)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    other = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(other, step_size=1)
    with pytest.raises(auditor.AuditError, match="different optimizer"):
        auditor.audit(model, data, optimizer=opt, scheduler=sched, steps=2)


def test_optimizer_hooks_are_not_run_on_the_callers_objects():
    model, data, _ = _setup(torch.optim.Adam)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    calls = []
    opt.register_step_post_hook(lambda *_: calls.append(1))
    report = auditor.audit(model, data, optimizer=opt, steps=4, verify_fixes=False)
    assert calls == []
    assert any("step hook" in n for n in report.probe.notes)


def test_accelerate_wrapped_optimizer():
    accelerate = pytest.importorskip("accelerate")
    model, data, _ = _setup(torch.optim.AdamW)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    accelerator = accelerate.Accelerator(cpu=True)
    model, wrapped = accelerator.prepare(model, opt)
    assert type(wrapped).__name__ == "AcceleratedOptimizer"
    _caller_steps(model, wrapped, data)
    before = _snapshot(wrapped.state_dict())
    report = auditor.audit(model, data, optimizer=wrapped, steps=4, verify_fixes=False)
    assert report.probe.optimizer.startswith("AdamW(")
    _assert_same(before, wrapped.state_dict())


def test_lightning_wrapped_optimizer():
    pytest.importorskip("lightning")
    from lightning.pytorch.core.optimizer import LightningOptimizer

    model, data, _ = _setup(torch.optim.SGD)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _caller_steps(model, opt, data)
    wrapped = LightningOptimizer(opt)
    before = _snapshot(opt.state_dict())
    report = auditor.audit(model, data, optimizer=wrapped, steps=4, verify_fixes=False)
    assert report.probe.optimizer.startswith("SGD(lr=0.1, momentum=0.9")
    _assert_same(before, opt.state_dict())


def test_not_an_optimizer_is_a_clear_error():
    model, data, _ = _setup(torch.optim.SGD)
    with pytest.raises(auditor.AuditError, match="torch.optim.Optimizer"):
        auditor.audit(model, data, optimizer=object(), steps=2)


def test_the_rate_a_schedule_climbs_to_is_read_from_its_scheduler():
    """A probe of 100 steps sees only the start of a long warm-up; the rate rules judge the peak the scheduler
    recorded in the group (OneCycleLR's max_lr, an LRScheduler's base rate), not the small rates seen."""
    from auditor.probe.optim import scheduled_peak

    def opt():
        return torch.optim.AdamW(nn.Linear(2, 2).parameters(), lr=3e-3)

    one = opt()
    torch.optim.lr_scheduler.OneCycleLR(one, max_lr=3e-3, total_steps=2000)
    assert one.param_groups[0]["lr"] < 2e-4 and scheduled_peak(one) == pytest.approx(3e-3)
    warm = opt()
    torch.optim.lr_scheduler.LambdaLR(warm, lambda s: min(1.0, (s + 1) / 1000))
    assert warm.param_groups[0]["lr"] < 1e-5 and scheduled_peak(warm) == pytest.approx(3e-3)
    assert scheduled_peak(opt()) is None
