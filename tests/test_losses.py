"""Every loss a user hands over gets the checks the default gets: the loss is recognised from the functional
call the user's code really makes, whatever object, class or training_step wraps it."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import auditor


def _classes(n=16, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(10, classes, generator=g)
    out = []
    for _ in range(n):
        x = torch.randn(32, 10, generator=g)
        out.append((x, (x @ w).argmax(1)))
    return out


def _binary(n=16, seed=0):
    return [(x, (x[:, :1] > 0).float()) for x, _ in _classes(n, seed=seed)]


def _mlp(out, tail=None):
    torch.manual_seed(0)
    layers = [nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, out)]
    return nn.Sequential(*layers, *([tail] if tail is not None else []))


class OwnCrossEntropy(nn.Module):
    """A user's own loss class: the functional call is inside."""

    def forward(self, output, target):
        return F.cross_entropy(output, target, label_smoothing=0.1)


def _rules(report):
    return {f.rule for f in report.findings}


@pytest.mark.parametrize("loss_fn", [nn.CrossEntropyLoss(), F.cross_entropy, OwnCrossEntropy(),
                                     nn.CrossEntropyLoss(label_smoothing=0.1, weight=torch.ones(4))],
                         ids=["object", "function", "own-class", "options"])
def test_softmax_before_any_cross_entropy_is_caught(loss_fn):
    report = auditor.audit(_mlp(4, nn.Softmax(-1)), _classes(), loss_fn=loss_fn, steps=30, verify_fixes=False)
    assert report.probe.loss_fn == "cross_entropy" and report.probe.num_classes == 4
    assert "output-not-logits" in _rules(report)
    assert report.root_causes[0] == "output-not-logits"
    healthy = auditor.audit(_mlp(4), _classes(), loss_fn=loss_fn, steps=30, verify_fixes=False)
    assert "output-not-logits" not in _rules(healthy) and "init-loss" not in _rules(healthy)


def test_options_are_reported():
    report = auditor.audit(_mlp(4), _classes(), loss_fn=nn.CrossEntropyLoss(label_smoothing=0.1), steps=5,
                           verify_fixes=False)
    assert "label_smoothing=0.1" in report.probe.loss_fn_reason


def test_nll_after_log_softmax_is_correct_and_on_scores_is_not():
    good = auditor.audit(_mlp(4, nn.LogSoftmax(-1)), _classes(), loss_fn=nn.NLLLoss(), steps=40, verify_fixes=False)
    assert good.probe.loss_fn == "nll" and not _rules(good) & {"output-not-logits", "init-loss"}
    bad = auditor.audit(_mlp(4), _classes(), loss_fn=nn.NLLLoss(), steps=10, verify_fixes=False)
    finding = next(f for f in bad.findings if f.rule == "output-not-logits")
    assert "NLLLoss" in finding.title


@pytest.mark.parametrize("tail", [nn.Sigmoid(), "function"], ids=["module", "torch.sigmoid"])
def test_sigmoid_before_bce_with_logits_is_caught(tail):
    if tail == "function":
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.net = _mlp(1)

            def forward(self, x):
                return torch.sigmoid(self.net(x)).squeeze(-1)

        model, loss_fn = Model(), lambda o, t: F.binary_cross_entropy_with_logits(o, t.squeeze(-1))
    else:
        model, loss_fn = _mlp(1, tail), nn.BCEWithLogitsLoss()
    report = auditor.audit(model, _binary(), loss_fn=loss_fn, steps=30, verify_fixes=False)
    assert report.probe.loss_fn == "bce_logits"
    assert report.probe.expected_initial_loss == pytest.approx(math.log(2))
    assert report.root_causes[0] == "output-not-logits"


def test_bce_healthy_forms_raise_nothing():
    with_logits = auditor.audit(_mlp(1), _binary(), loss_fn=nn.BCEWithLogitsLoss(), steps=40, verify_fixes=False)
    with_probs = auditor.audit(_mlp(1, nn.Sigmoid()), _binary(), loss_fn=nn.BCELoss(), steps=40, verify_fixes=False)
    assert not _rules(with_logits) and not _rules(with_probs)


def test_bce_init_loss_knows_ln2():
    model = _mlp(1)
    with torch.no_grad():
        model[2].weight.mul_(40)  # confident logits at init
    report = auditor.audit(model, _binary(), loss_fn=nn.BCEWithLogitsLoss(), steps=20, verify_fixes=False)
    finding = next(f for f in report.findings if f.rule == "init-loss")
    assert "ln 2" in finding.diagnosis


@pytest.mark.parametrize("loss_fn,kind", [(nn.MSELoss(), "mse"), (nn.L1Loss(), "l1"), (nn.HuberLoss(), "huber"),
                                          (nn.SmoothL1Loss(), "smooth_l1")])
def test_regression_losses_know_their_initial_value(loss_fn, kind):
    data = [(x, x[:, :2] * 3) for x, _ in _classes()]
    report = auditor.audit(_mlp(2), data, loss_fn=loss_fn, steps=5, verify_fixes=False)
    assert report.probe.loss_fn == kind
    y = torch.cat([t for _, t in data[:4]])
    expected = {"mse": (y * y).mean(), "l1": y.abs().mean()}.get(kind)
    if expected is not None:
        assert report.probe.expected_initial_loss == pytest.approx(float(expected), rel=1e-5)
    assert report.probe.expected_initial_loss > 0


def test_training_step_returning_an_object_with_logits():
    # A Hugging Face style model: computes its own loss from labels, returns an object with .loss and .logits.
    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.head = nn.Embedding(50, 16), nn.Linear(16, 50)

        def forward(self, input_ids, labels):
            logits = self.head(self.emb(input_ids))
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, 50), labels[:, 1:].reshape(-1))
            return SimpleNamespace(loss=loss, logits=logits)

    torch.manual_seed(0)
    model = LM()
    with torch.no_grad():
        model.head.weight.mul_(30)
    ids = [torch.randint(0, 50, (8, 12)) for _ in range(10)]
    batches = [{"input_ids": t, "labels": t} for t in ids]
    report = auditor.audit(model, batches, training_step=lambda m, b: m(**b).loss, steps=10, verify_fixes=False)
    assert report.probe.loss_fn == "cross_entropy" and report.probe.num_classes == 50
    assert report.probe.expected_initial_loss == pytest.approx(math.log(50))
    assert "init-loss" in _rules(report)


def _segmentation(n=12, classes=5, void=255, seed=0):
    """Per-pixel labels from the input's argmax over channels; a border of void pixels the loss must skip."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(8, classes, 12, 12, generator=g)
        y = x.argmax(1)
        y[:, :2, :] = void
        out.append((x, y))
    return out


def _segnet(classes=5):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(classes, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, classes, 1))


def _own_void_loss(output, target):
    return F.cross_entropy(output, target, ignore_index=255)


@pytest.mark.parametrize("loss_fn", [nn.CrossEntropyLoss(ignore_index=255), _own_void_loss], ids=["object", "function"])
def test_ignore_index_255_is_honoured(loss_fn):
    report = auditor.audit(_segnet(), _segmentation(), loss_fn=loss_fn, steps=30, verify_fixes=False,
                           make_optimizer=lambda params: torch.optim.Adam(params, lr=1e-2))
    assert report.probe.num_classes == 5
    assert report.probe.initial_loss == pytest.approx(math.log(5), rel=0.25)
    assert not [f for f in report.findings if f.severity != "info"], [f.rule for f in report.findings]


def test_targets_outside_the_classes_and_not_ignored_are_still_refused():
    with pytest.raises(auditor.AuditError, match=r"targets range from 0 to 255.*ignore_index"):
        auditor.audit(_segnet(), _segmentation(), loss_fn=F.cross_entropy, steps=5, verify_fixes=False)
    with pytest.raises(auditor.AuditError, match="targets range from 0 to 7"):
        auditor.audit(_segnet(), _segmentation(void=7), loss_fn=nn.CrossEntropyLoss(ignore_index=255), steps=5,
                      verify_fixes=False)


def _mixup(batches, classes=4, seed=0):
    """Soft targets as mixup makes them: two samples' one-hot labels mixed with a Beta(0.4, 0.4) weight."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for x, y in batches:
        lam = torch.distributions.Beta(0.4, 0.4).sample((x.shape[0], 1))
        perm = torch.randperm(x.shape[0], generator=g)
        onehot = F.one_hot(y, classes).float()
        out.append((lam * x + (1 - lam) * x[perm], lam * onehot + (1 - lam) * onehot[perm]))
    return out


def test_soft_targets_are_class_probabilities_not_labels():
    torch.manual_seed(0)
    report = auditor.audit(_mlp(4), _mixup(_classes(32)), loss_fn=nn.CrossEntropyLoss(), steps=60,
                           verify_fixes=False)
    assert report.probe.loss_fn == "cross_entropy" and report.probe.num_classes == 4
    assert report.probe.expected_initial_loss == pytest.approx(math.log(4))
    counts = sum(c for _, c in report.evidence.labels)
    assert counts.sum() > 0 and counts.min() > 0.1 * counts.sum()  # each class seen as the mixture's larger part
    assert not [f for f in report.findings if f.severity != "info"], [f.rule for f in report.findings]


def test_pos_weight_moves_the_expected_initial_loss():
    pw = torch.tensor([3.0])
    report = auditor.audit(_mlp(1), _binary(), loss_fn=nn.BCEWithLogitsLoss(pos_weight=pw), steps=20,
                           verify_fixes=False)
    from auditor.probe.run import INIT_BATCHES  # the batches the loss at initialisation is measured on

    positives = float(torch.cat([y for _, y in _binary()[:INIT_BATCHES]]).mean())
    assert report.probe.expected_initial_loss == pytest.approx(math.log(2) * (1 + 2 * positives), rel=1e-4)
    assert "init-loss" not in _rules(report)


def test_class_weights_and_label_smoothing_keep_ln_c():
    loss = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5, 1.0]), label_smoothing=0.2)
    report = auditor.audit(_mlp(4), _classes(), loss_fn=loss, steps=20, verify_fixes=False)
    assert report.probe.expected_initial_loss == pytest.approx(math.log(4))
    assert "init-loss" not in _rules(report)
