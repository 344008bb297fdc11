"""The probe: activations found as modules and as plain calls, statistics right, caller's state untouched."""

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import auditor


def _data(n=8, features=6, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, features, generator=g), torch.randint(0, classes, (16,), generator=g))
            for _ in range(n)]


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = torch.tanh(self.a(x))
        h = F.relu(self.b(h))
        return self.c(h).sigmoid() * 0 + self.c(h)


def test_activations_found_as_modules_and_plain_calls():
    mod = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 3))
    names = {a.name: a.kind for a in auditor.audit(mod, _data(), steps=3).evidence.activations}
    assert names == {"1": "tanh", "3": "smooth"}
    names = {a.name: a.kind for a in auditor.audit(Functional(), _data(), steps=3).evidence.activations}
    kinds = sorted(names.values())
    assert kinds == ["relu", "sigmoid", "tanh"]
    assert any(n.startswith("tanh@test_probe.py:") for n in names), names


def test_saturation_and_dead_fractions_are_measured_correctly():
    lin = nn.Linear(4, 4)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.copy_(torch.tensor([10.0, -10.0, 0.0, 0.0]))  # two units pinned at +-1, two at 0
    model = nn.Sequential(lin, nn.Tanh(), nn.Linear(4, 2))
    data = [(torch.randn(8, 4), torch.randint(0, 2, (8,))) for _ in range(2)]
    act = auditor.audit(model, data, steps=1).evidence.activations[0]
    assert act.saturated[0] == 0.5
    assert act.dead[0] == 0.5


def test_caller_state_is_left_bit_for_bit():
    torch.manual_seed(123)
    np.random.seed(7)
    random.seed(9)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = _data()
    x, y = data[0]
    F.cross_entropy(model(x), y).backward()
    opt.step()  # give the optimizer some state
    before_params = {k: v.clone() for k, v in model.state_dict().items()}
    before_opt = {k: {n: t.clone() if torch.is_tensor(t) else t for n, t in s.items()}
                  for k, s in opt.state_dict()["state"].items()}
    grads = [p.grad.clone() for p in model.parameters()]
    rng = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())

    report = auditor.audit(model, data, optimizer=opt, steps=5)

    assert report.probe.steps_run == 5
    for k, v in model.state_dict().items():
        assert torch.equal(v, before_params[k]), k
    for k, s in opt.state_dict()["state"].items():
        for n, t in s.items():
            assert torch.equal(t, before_opt[k][n]) if torch.is_tensor(t) else t == before_opt[k][n]
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))
    assert model.training
    assert torch.equal(torch.get_rng_state(), rng[0])
    assert np.array_equal(np.random.get_state()[1], rng[1])
    assert random.getstate() == rng[2]
    assert report.probe.optimizer.startswith("Adam(")


def test_loss_choice_is_reported():
    model = nn.Sequential(nn.Linear(6, 3))
    ce = auditor.audit(model, _data(), steps=2).probe
    assert ce.loss_fn == "cross_entropy" and ce.num_classes == 3 and ce.loss_fn_default
    reg = [(torch.randn(16, 6), torch.randn(16, 3)) for _ in range(3)]
    mse = auditor.audit(model, reg, steps=2).probe
    assert mse.loss_fn == "mse" and mse.expected_initial_loss is not None
    assert mse.optimizer_default and "AdamW" in mse.optimizer


def test_training_step_with_dict_batches():
    model = nn.Sequential(nn.Linear(6, 3))
    batches = [{"x": x, "y": y} for x, y in _data()]
    report = auditor.audit(model, batches, steps=4,
                           training_step=lambda m, b: F.cross_entropy(m(b["x"]), b["y"]))
    # The functional loss inside the training_step is recognised; the reason still says where it came from.
    assert report.probe.loss_fn == "cross_entropy" and report.probe.steps_run == 4
    assert "training_step" in report.probe.loss_fn_reason


def test_statistics_match_torch_on_measured_steps_and_gradients_every_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    data = _data(n=10)
    reference = [p.detach().clone() for p in model.parameters()]
    ev = auditor.audit(model, data, steps=10, stats_every=4, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                       ).evidence
    measured = [0, 4, 8, 9]  # every 4th step and the last
    weight = ev.params[0]
    assert np.isfinite(weight.grad_norm).all()  # every step
    assert np.isfinite(weight.update_data_ratio[measured]).all()
    assert np.isnan(np.delete(weight.update_data_ratio, measured)).all()
    act = ev.activations[0]
    assert np.isfinite(act.std[measured]).all() and np.isnan(act.std[1])
    # Step 0 by hand: tanh output statistics and ‖w‖ are those of the initial model on the first batch.
    x = data[0][0]
    h = torch.tanh(x @ reference[0].T + reference[1])
    assert abs(act.mean[0] - h.mean().item()) < 1e-5
    assert abs(act.std[0] - h.std().item()) < 1e-5
    assert abs(weight.data_rms[0] - reference[0].norm().item() / reference[0].numel() ** 0.5) < 1e-6


def test_stats_every_must_be_positive():
    with pytest.raises(auditor.AuditError, match="stats-every"):
        auditor.audit(nn.Linear(6, 3), _data(), steps=2, stats_every=0)


def test_overshoot_rescore_replays_dropout_masks():
    # With lr ~0 the update changes nothing, so re-scoring the batch must give the same loss exactly; fresh
    # dropout masks would make half the steps look like overshoots.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))
    ev = auditor.audit(model, _data(n=30), steps=30, stats_every=3,
                       optimizer=torch.optim.SGD(model.parameters(), lr=1e-12)).evidence
    measured = np.isfinite(ev.loss_after)
    assert measured.sum() >= 10
    assert np.allclose(ev.loss_after[measured], ev.loss[measured], rtol=1e-6)


def test_a_generator_loader_serves_the_probe_and_its_experiments():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    data = iter(_data(n=30))  # can be iterated once only
    report = auditor.audit(model, data, steps=50)
    assert report.probe.steps_run == 30 and any("could not be iterated again" in n for n in report.probe.notes)
    assert report.evidence.overfit and len(report.evidence.lr_range["lrs"]) > 10
    # Once the generator has run out, the stream asks it no more: one new pass begun, not one per batch read.
    from auditor.probe.batches import BatchStream

    passes = []
    stream = BatchStream(iter(_data(n=3)), torch.device("cpu"), "loader.py",
                         on_new_epoch=lambda loader, epoch: passes.append(epoch))
    assert [stream.next() is None for _ in range(6)] == [False] * 3 + [True] * 3 and passes == [1]


def test_an_experiment_the_model_cannot_take_is_a_note_not_a_failure():
    class FixedBatch(nn.Module):  # hard-codes the batch size: the 8-sample overfit batch cannot pass
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6 * 16, 3 * 16)

        def forward(self, x):
            return self.lin(x.reshape(1, 16 * 6)).reshape(16, 3)

    torch.manual_seed(0)
    report = auditor.audit(FixedBatch(), _data(), steps=10, verify_fixes=False)
    assert report.evidence.overfit is None
    assert any("overfit-one-batch experiment could not run" in n for n in report.probe.notes)


def test_label_counts_skip_ignored_and_out_of_range_targets():
    from auditor.probe.checks import label_counts

    counts = label_counts(torch.tensor([[0, 2, -100], [5, 2, 1]]), 3)
    assert counts.tolist() == [1, 1, 2]


class _Seq(nn.Module):
    def __init__(self, block: nn.Module, width: int):
        super().__init__()
        self.emb, self.block, self.head = nn.Embedding(30, 16), block, nn.Linear(width, 30)

    def forward(self, x):
        h = self.block(self.emb(x))
        return self.head(h[0] if isinstance(h, tuple) else h)


def _tokens(n=10):
    g = torch.Generator().manual_seed(0)
    return [(torch.randint(0, 30, (8, 12), generator=g), torch.randint(0, 30, (8, 12), generator=g))
            for _ in range(n)]


@pytest.mark.parametrize("block,width,name,kind", [
    (nn.RNN(16, 32, batch_first=True, nonlinearity="relu"), 32, "block:hidden", "relu"),
    (nn.GRU(16, 32, batch_first=True), 32, "block:hidden", "tanh"),
    (nn.LSTM(16, 32), 32, "block:hidden", "tanh"),
    (nn.TransformerEncoderLayer(16, 2, 64, batch_first=True), 16, "block:relu", "relu"),
], ids=["rnn", "gru", "lstm", "transformer-layer"])
def test_activations_inside_fused_modules_are_measured(block, width, name, kind):
    torch.manual_seed(0)
    acts = {a.name: a.kind for a in auditor.audit(_Seq(block, width), _tokens(), steps=3,
                                                   verify_fixes=False).evidence.activations}
    assert acts.get(name) == kind, acts


def test_a_dead_recurrent_net_is_named_dead():
    torch.manual_seed(0)
    rnn = nn.RNN(16, 32, batch_first=True, nonlinearity="relu")
    with torch.no_grad():
        rnn.bias_ih_l0.fill_(-20.0)  # every pre-activation negative: every unit off at every step
    report = auditor.audit(_Seq(rnn, 32), _tokens(), steps=20, verify_fixes=False)
    dead = next(f for f in report.findings if f.rule == "dead-units")
    assert dead.layers == ["block:hidden"] and dead.severity == "error"


def test_where_the_loader_came_round_is_read_from_its_samples_not_from_a_duplicate():
    from auditor.probe.checks import first_pass_length, unseen_steps

    a, b, c, d, e = ((float(i), 0.0) for i in range(5))
    assert first_pass_length([[a, b], [c, d], [b, c]]) == 2
    # One sample met again (a duplicate in the data) is not a new pass; most of a batch is.
    assert first_pass_length([[a, b], [c, d], [a, e], [b, c]]) == 3
    assert first_pass_length([[a, b], [c, d]]) is None  # never came round
    assert first_pass_length([[a, b], [], [a, b]]) is None  # a step not recorded: unknown
    assert unseen_steps([[a, b], [c, d], [a, e], []]) == [True, True, False, False]


def _warmed(rate: float, k: int, n: int) -> float:
    return rate * (0.1 + 0.9 * k / n) if k < n else rate


def test_a_warm_up_fix_ramps_the_rate_on_top_of_the_schedule():
    """A verified warm-up scales each step's rate from a tenth up to the user's over its steps and puts the rate
    back before the scheduler steps: a chainable schedule (StepLR multiplies the rate it finds) goes on from its
    own rates, not from the warmed ones."""
    import torch

    from auditor.load import UserSetup
    from auditor.probe.run import ProbeOptions, run_probe

    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    setup = UserSetup(model=model, train_loader=_data())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.9)
    ev = run_probe(setup, ProbeOptions(steps=12, checks=False, warmup=6), optimizer=opt, scheduler=sched)
    expected = [_warmed(0.1 * 0.9**k, k, 6) for k in range(12)]
    assert np.allclose(ev.lrs[:, 0], expected), ev.lrs[:, 0]
    plain = run_probe(setup, ProbeOptions(steps=12, checks=False), optimizer=opt, scheduler=sched)
    assert np.allclose(plain.lrs[:, 0], [0.1 * 0.9**k for k in range(12)])
    assert opt.param_groups[0]["lr"] == 0.1  # the caller's optimizer untouched


def test_units_of_another_network_are_not_the_models_to_judge():
    """WGAN-GP's generator, audited: its loss runs through the critic, whose ReLUs, fed the generator's first,
    nearly identical fakes, were half off for the whole batch and reported as the generator's dead units (an
    error). A network holding none of the model's parameters is not traced; a wrapper that holds them, and a
    parameter-free activation module applied to the model's output, still are."""
    from auditor.probe.activations import ActivationTracer
    from auditor.probe.devicelog import DeviceLog

    gen = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    critic = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))

    class Wrapper(nn.Module):  # a LightningModule-style holder of the model, with an activation of its own
        def __init__(self):
            super().__init__()
            self.net = gen

        def forward(self, x):
            return torch.relu(self.net(x))

    tracer = ActivationTracer(gen, DeviceLog(), set())
    x = torch.randn(16, 4)
    with tracer:
        critic(gen(x))
        nn.Sigmoid()(gen(x))
        Wrapper()(x)
    kinds = sorted(tracer.kinds.values())
    assert kinds == ["relu", "sigmoid", "tanh"], tracer.kinds  # the critic's relu absent, the wrapper's present
    assert "1" in tracer.kinds and not any("critic" in n for n in tracer.kinds)


@pytest.mark.parametrize("loader", ["list", "generator"])
def test_lazy_modules_get_their_weights_before_the_probe(loader):
    """nn.LazyLinear has no weights until its first forward: the audit stopped with an internal error while
    sizing the model. Its first forward now runs on the loader's first batch (a generator's batch is put back),
    and the caller's generators are left as they were."""
    data = _data(n=5)
    model = nn.Sequential(nn.LazyLinear(16), nn.BatchNorm1d(16), nn.Tanh(), nn.LazyLinear(3))
    batches = iter(data) if loader == "generator" else data
    before = torch.get_rng_state()
    report = auditor.audit(model, batches, steps=5, verify_fixes=False)
    assert torch.equal(torch.get_rng_state(), before)
    assert report.evidence.probe.steps_run == 5  # a generator's five batches, the first one put back
    assert any("lazy modules" in n for n in report.evidence.probe.notes)
    assert model[0].weight.shape == (16, 6)
    # The caller's BatchNorm learnt nothing from the batch that made the weights, and is back in training mode.
    assert model[1].num_batches_tracked.item() == 0 and model[1].training
