"""Injected faults on the zoo (mutation testing, after DeepCrime, ISSTA 2021): each operator is a fault drawn
from real bugs, applied to a healthy zoo entry, with the root causes a practitioner would name first. The
sweep scores detection (any warning or error) and the headline (the first root cause) per operator and per
model.

    python bench/mutations.py                          # every operator on the default models
    python bench/mutations.py --models gpt2,resnet18 --ops lr_x100,labels_shuffled --json out.json

An operator that does not apply to a model (Adam's eps on an SGD recipe, a causal mask on a classifier) is
left out of its row, not counted as a miss.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))

LR_HIGH = frozenset({"lr-range", "update-ratio", "loss-divergence", "loss-nan", "exploding-gradients",
                     "loss-oscillation", "grad-spikes"})
LR_LOW = frozenset({"lr-range", "update-ratio"})
DEFAULT_MODELS = "mlp_regression,gpt2,bert,vit,resnet18,mobilenet_v3_small"


@dataclass(frozen=True)
class Operator:
    name: str
    expect: frozenset  # the first root cause should be one of these
    apply: Callable[[dict], dict | None]  # audit keywords -> mutated keywords, or None where it does not apply
    fault: str


# --- what a mutation needs to find in a zoo entry ------------------------------------------------------


def _output_layer(model: nn.Module) -> nn.Module | None:
    """The last Linear or 1x1 Conv in module order: the layer that produces the logits in every zoo entry."""
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            last = m
    return last


def _first_layer(model: nn.Module) -> nn.Module | None:
    return next((m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d | nn.Embedding)), None)


def _tensor_loader(kw) -> tuple[torch.Tensor, torch.Tensor] | None:
    loader = kw["loader"]
    if isinstance(loader, DataLoader) and isinstance(loader.dataset, TensorDataset):
        return loader.dataset.tensors
    return None


def _rebuild(kw, x, y):
    old = kw["loader"]
    return dict(kw, loader=DataLoader(TensorDataset(x, y), batch_size=old.batch_size, shuffle=True, drop_last=True))


def _map_labels(kw, fn):
    data = _tensor_loader(kw)
    if data is not None:
        return _rebuild(kw, data[0], fn(data[1]))
    if isinstance(kw["loader"], list) and isinstance(kw["loader"][0], dict) and "labels" in kw["loader"][0]:
        labels = torch.cat([b["labels"] for b in kw["loader"]])
        if labels.ndim > 1:  # token labels of a language model: the task, not a label column
            return None
        new, i = fn(labels), 0
        out = []
        for b in kw["loader"]:
            n = b["labels"].shape[0]
            out.append(dict(b, labels=new[i:i + n]))
            i += n
        return dict(kw, loader=out)
    return None


def _classifier(kw) -> bool:
    """Plain (inputs, class index) batches, scored by the auditor's default cross-entropy."""
    data = _tensor_loader(kw)
    return kw.get("training_step") is None and kw.get("loss_fn") is None and data is not None and \
        not data[1].is_floating_point()


class _Wrapped(nn.Module):
    def __init__(self, inner, fn):
        super().__init__()
        self.inner, self.fn = inner, fn

    def forward(self, x):
        return self.fn(self.inner(x))


def _lr(kw, factor):
    make = kw["make_optimizer"]

    def scaled(params):
        opt = make(params)
        for g in opt.param_groups:
            g["lr"] *= factor
        return opt
    return dict(kw, make_optimizer=scaled)


def adam_eps_1(kw):
    make = kw["make_optimizer"]
    if "betas" not in make([nn.Parameter(torch.zeros(1))]).param_groups[0]:
        return None  # not an Adam-family recipe

    def changed(params):
        opt = make(params)
        for g in opt.param_groups:
            g["eps"] = 1.0
        return opt
    return dict(kw, make_optimizer=changed)


# --- the operators ---------------------------------------------------------------------------------------


def output_x100(kw):
    layer = _output_layer(kw["model"])
    with torch.no_grad():
        layer.weight.mul_(100)
    return kw


def zero_init(kw):
    with torch.no_grad():
        for m in kw["model"].modules():
            if isinstance(m, nn.Linear | nn.Conv2d | nn.Embedding):
                m.weight.zero_()
    return kw


def softmax_before_loss(kw):
    if not _classifier(kw):
        return None
    return dict(kw, model=_Wrapped(kw["model"], lambda out: out.softmax(1)))


def log_softmax_over_batch(kw):
    if not _classifier(kw):
        return None
    return dict(kw, model=_Wrapped(kw["model"], lambda out: F.log_softmax(out, dim=0)), loss_fn=F.nll_loss)


def layer_left_out(kw):
    """The optimizer is handed every parameter but the first layer's (the probe builds it for a copy of the
    model, so they are left out by position, as a slice of the parameter list would)."""
    first = _first_layer(kw["model"])
    own = {id(p) for p in first.parameters()}
    skip = [i for i, p in enumerate(kw["model"].parameters()) if id(p) in own]
    make = kw["make_optimizer"]
    return dict(kw, make_optimizer=lambda params: make([p for i, p in enumerate(params) if i not in skip]))


def frozen_output(kw):
    for p in _output_layer(kw["model"]).parameters():
        p.requires_grad_(False)
    return kw


def labels_shuffled(kw):
    g = torch.Generator().manual_seed(99)
    return _map_labels(kw, lambda y: y[torch.randperm(y.shape[0], generator=g)])


def labels_shifted(kw):
    return _map_labels(kw, lambda y: torch.roll(y, 1, 0))  # each sample gets its neighbour's label


def inputs_x255(kw):
    data = _tensor_loader(kw)
    if data is None or data[0].ndim != 4:
        return None
    return _rebuild(kw, data[0] * 255, data[1])


def broadcast_loss(kw):
    data = _tensor_loader(kw)
    if data is None or not data[1].is_floating_point():
        return None
    return dict(_rebuild(kw, data[0], data[1].reshape(-1)), loss_fn=lambda out, y: F.mse_loss(out, y))


def schedule_collapse(kw):
    make = kw["make_optimizer"]
    model = kw["model"]
    opt = make([p for p in model.parameters() if p.requires_grad])
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.9)  # an epoch schedule stepped per batch
    return dict({k: v for k, v in kw.items() if k != "make_optimizer"}, optimizer=opt, scheduler=sched)


OPERATORS = [
    Operator("output_x100", frozenset({"init-loss"}), output_x100, "output layer initialised 100x too large"),
    Operator("zero_init", frozenset({"init-scale", "vanishing-gradients", "dead-units", "input-independence"}),
             zero_init, "every weight initialised to zero"),
    Operator("softmax_before_loss", frozenset({"output-not-logits"}), softmax_before_loss,
             "softmax applied before a cross-entropy that applies its own"),
    Operator("log_softmax_over_batch", frozenset({"batch-mixing", "output-not-logits"}), log_softmax_over_batch,
             "log_softmax over the batch dimension"),
    Operator("lr_x100", LR_HIGH, lambda kw: _lr(kw, 100), "learning rate x100"),
    Operator("lr_div1000", LR_LOW, lambda kw: _lr(kw, 1e-3), "learning rate /1000"),
    Operator("adam_eps_1", frozenset({"optimizer-config"}), adam_eps_1, "Adam's eps set to 1"),
    Operator("layer_left_out", frozenset({"weights-not-updating"}), layer_left_out,
             "the first layer left out of the optimizer"),
    Operator("frozen_output", frozenset({"weights-not-updating"}), frozen_output,
             "the output layer frozen (requires_grad=False)"),
    Operator("labels_shuffled", frozenset({"label-problems"}), labels_shuffled, "labels shuffled"),
    Operator("labels_shifted", frozenset({"label-problems"}), labels_shifted, "labels shifted by one sample"),
    Operator("inputs_x255", frozenset({"input-scale"}), inputs_x255, "images in 0..255, not standardised"),
    Operator("broadcast_loss", frozenset({"loss-broadcast"}), broadcast_loss,
             "a regression loss broadcasting (B, 1) against (B,)"),
    Operator("schedule_collapse", frozenset({"lr-schedule"}), schedule_collapse,
             "an epoch schedule (StepLR gamma 0.9) stepped every batch"),
]


# --- models beyond the zoo that some operators need ---------------------------------------------------


def mlp_regression():
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(2048, 16, generator=g)
    y = torch.sin(x @ torch.randn(16, 1, generator=g) / 4) + 0.1 * torch.randn(2048, 1, generator=g)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    loader = DataLoader(TensorDataset(x, (y - y.mean()) / y.std()), batch_size=32, shuffle=True, drop_last=True)
    return dict(model=model, loader=loader, make_optimizer=lambda p: torch.optim.Adam(p, lr=1e-3))


def build(name: str) -> dict:
    if name == "mlp_regression":
        return mlp_regression()
    from zoo_models import entries

    return next(e for e in entries() if e.name == name).build()


def audit_one(model: str, op: str, seed: int) -> dict:
    import auditor

    torch.manual_seed(seed)
    kw = build(model)
    operator = next(o for o in OPERATORS if o.name == op) if op != "none" else None
    if operator is not None:
        kw = operator.apply(kw)
        if kw is None:
            return {"model": model, "op": op, "applies": False}
    started = time.perf_counter()
    report = auditor.audit(**kw, seed=seed)
    loud = [f.rule for f in report.findings if f.severity != "info"]
    return {"model": model, "op": op, "applies": True, "seconds": round(time.perf_counter() - started, 1),
            "fired": loud, "roots": report.root_causes,
            "detected": bool(loud), "headline": report.root_causes[0] if report.root_causes else None,
            "right": bool(operator and report.root_causes and report.root_causes[0] in operator.expect)}


def run(model: str, op: str, seed: int, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--one", f"{model}:{op}", "--seed", str(seed)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, PYTHONWARNINGS="ignore"))
    except subprocess.TimeoutExpired:
        return {"model": model, "op": op, "applies": True, "error": f"over {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"model": model, "op": op, "applies": True,
                "error": ((done.stderr.strip().splitlines() or ["no output"])[-1])[:200]}
    return json.loads(lines[-1])


def tables(results: list[dict]) -> str:
    ran = [r for r in results if r.get("applies") and "error" not in r and r["op"] != "none"]
    out = ["| operator | fault | expected headline | detected | headline right | wrong headlines |",
           "|---|---|---|---|---|---|"]
    for o in OPERATORS:
        rs = [r for r in ran if r["op"] == o.name]
        if not rs:
            continue
        wrong = sorted({f"{r['model']}: {r['headline']}" for r in rs if not r["right"]})
        out.append(f"| {o.name} | {o.fault} | {', '.join(sorted(o.expect))} | {sum(r['detected'] for r in rs)}/"
                   f"{len(rs)} | {sum(r['right'] for r in rs)}/{len(rs)} | {'; '.join(wrong) or '-'} |")
    models = sorted({r["model"] for r in ran})
    out += ["", "| model | detected | headline right |", "|---|---|---|"]
    for m in models:
        rs = [r for r in ran if r["model"] == m]
        out.append(f"| {m} | {sum(r['detected'] for r in rs)}/{len(rs)} | {sum(r['right'] for r in rs)}/{len(rs)} |")
    if ran:
        out.append(f"\ndetected {sum(r['detected'] for r in ran)}/{len(ran)} "
                   f"({100 * sum(r['detected'] for r in ran) / len(ran):.0f}%), headline right "
                   f"{sum(r['right'] for r in ran)}/{len(ran)} ({100 * sum(r['right'] for r in ran) / len(ran):.0f}%)")
    clean = [r for r in results if r["op"] == "none" and "error" not in r]
    if clean:
        out.append(f"unmutated models clean: {sum(not r['fired'] for r in clean)}/{len(clean)}")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--ops", default="none," + ",".join(o.name for o in OPERATORS))
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--json", help="write the results here as they come")
    args = ap.parse_args()
    if args.one:
        model, op = args.one.split(":")
        print(json.dumps(audit_one(model, op, args.seed)))
        return 0
    results = []
    for model in args.models.split(","):
        for op in args.ops.split(","):
            r = run(model, op, args.seed, args.timeout)
            results.append(r)
            if r.get("applies"):
                what = r.get("error") or (f"fired {r['fired'] or 'nothing'}" if op == "none" else
                                          f"headline {r['headline']} {'OK' if r['right'] else 'WRONG'} "
                                          f"fired {r['fired']}")
                print(f"{model:20s} {op:24s} {r.get('seconds', '-'):>6}s {what}", flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1))
    print()
    print(tables(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
