"""Step 4c of the data flow: which findings are root causes and which are their consequences.

A list of symptoms is not a diagnosis: a learning rate far too high shows up as gradient spikes, dead units,
an input-independent model and a plateau, and each of those rules, read alone, advises something else.
Findings are linked into a cause -> consequence graph from the evidence, strongest first:

(a) counterfactual: a finding's mechanical fix was applied to a copy and re-probed with the same seed and
    batches (auditor/verify.py); the other findings that disappear there are explained by it, and one that
    stays is not (whatever the mechanism table says);
(b) time: each finding's onset, the step its anomaly began; a cause does not begin after its consequence;
(c) mechanism: MECHANISMS below, the known edges, each with its source.

Findings that turn one knob opposite ways (the learning rate up and down) are never both roots: the root
with the stronger evidence decides and the other is shown as its consequence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .engine import SEVERITY_RANK, Finding

LR_HIGH, LR_LOW = "lr-down", "lr-up"  # Finding.advice of rules that say the rate is too high / too low


@dataclass(frozen=True)
class Mechanism:
    cause: str  # a rule id, or an advice tag (LR_HIGH: any finding that says the rate is too high)
    effects: tuple[str, ...]
    how: str
    source: str
    # Only when the cause's own evidence shows this mechanism at work (else the edge is left to later entries).
    when: Callable[[Finding], bool] | None = None
    # Only for effects that began after the first update: a mechanism that acts through the updates cannot
    # explain what was there at initialisation.
    after_updates: bool = False
    # Only for effects whose own evidence shows this mechanism at work.
    effect_when: Callable[[Finding], bool] | None = None


def _whole_layer_dead(f: Finding) -> bool:
    return max(f.evidence.get("dead_fraction", {0: 0}).values()) >= 0.95


# In order of precedence: when two findings could each explain the other and their onsets do not decide,
# the edge from the earlier entry wins. The data and the model's structure come first, then the
# initialisation, then the training dynamics they set off.
MECHANISMS = (
    # The loop's own bugs (audit run) come first: each changes what every update is, so every dynamics rule
    # downstream measures its effect.
    Mechanism("stale-optimizer", ("weights-not-updating", "loss-plateau", "update-ratio", "missing-zero-grad",
                                  "lr-range", "overfit-one-batch"),
              "an optimizer holding another model's tensors never moves the one that runs",
              "PyTorch docs, torch.optim: construct optimizers after the model's final form"),
    Mechanism("grads-zeroed-before-step", ("weights-not-updating", "loss-plateau", "update-ratio", "lr-range"),
              "gradients cleared before step() leave the optimizer nothing to apply",
              "PyTorch docs, 'Zeroing out gradients in PyTorch'"),
    Mechanism("missing-zero-grad", ("loss-divergence", "loss-nan", "loss-oscillation", "grad-spikes",
                                    "exploding-gradients", "update-ratio", "lr-range", "dead-units",
                                    "saturated-units", "grad-data-ratio", "loss-plateau"),
              "gradients summed over every earlier step make each update larger than the last",
              "PyTorch docs, torch.optim.Optimizer.zero_grad"),
    Mechanism("clip-before-unscale", ("loss-plateau", "update-ratio", "lr-range", "vanishing-gradients"),
              "clipping the scaled norm shrinks the real gradients by the loss scale",
              "PyTorch docs, 'Automatic Mixed Precision examples': gradient clipping"),
    Mechanism("clip-too-tight", ("loss-plateau", "update-ratio", "lr-range", "vanishing-gradients",
                                 "loss-hockey-stick"),
              "a clipping norm far below the gradients' makes every SGD step the rate times that norm",
              "Pascanu, Mikolov & Bengio, ICML 2013: clipping for the rare exploding step"),
    Mechanism("lr-schedule", ("loss-plateau", "update-ratio", "vanishing-gradients", "lr-range",
                              "overfit-one-batch", "loss-oscillation"),
              "a rate that collapses within the first steps stops every layer from learning",
              "PyTorch docs, 'How to adjust learning rate'"),
    Mechanism("train-in-eval-mode", ("overfitting", "loss-oscillation", "grad-spikes"),
              "training without dropout and on frozen BatchNorm statistics removes the regularisation and "
              "mismatches the normalisation", "PyTorch docs, nn.Module.train"),
    # Before the entry of shuffled-apart labels, whose effects are a subset: the unshuffled loader's own.
    Mechanism("label-problems", ("exploding-gradients", "grad-spikes", "loss-divergence", "loss-nan",
                                 "loss-oscillation", "dead-units", "saturated-units", "lr-range", "update-ratio",
                                 "loss-plateau", "overfit-one-batch", "input-independence", "overfitting"),
              "batches of one class fit the model to that class alone, so the loss and the gradient jump at "
              "every switch to the next",
              "Goodfellow, Bengio & Courville, 'Deep Learning' (2016), 8.1.3: minibatches drawn at random",
              when=lambda f: "batch_majority" in f.evidence),
    Mechanism("label-problems", ("loss-plateau", "lr-range", "update-ratio", "input-independence",
                                 "overfit-one-batch", "overfitting", "loss-oscillation"),
              "labels that do not belong to their inputs leave nothing to learn but the label frequencies",
              "Zhang et al., 'Understanding deep learning requires rethinking generalization', ICLR 2017"),
    Mechanism("repeated-batches", ("overfitting", "grad-spikes", "loss-hockey-stick", "lr-range"),
              "the same batch every step is memorised, not learned from",
              "Karpathy, 'A Recipe for Training Neural Networks' (2019): overfit one batch on purpose only"),
    Mechanism("half-precision-weights", ("loss-nan", "loss-divergence", "exploding-gradients", "grad-spikes",
                                         "loss-plateau", "update-ratio", "weights-not-updating", "lr-range",
                                         "optimizer-config", "dead-units", "saturated-units",
                                         "overfit-one-batch"),
              "float16 weights round small steps away, and Adam's eps is 0 in float16 (0/0 where the second moment "
              "underflows)", "Micikevicius et al., 'Mixed Precision Training', ICLR 2018"),
    Mechanism("loss-reduction-sum", ("update-ratio", "lr-range", "dead-units", "saturated-units",
                                     "exploding-gradients", "grad-spikes", "loss-plateau", "loss-divergence",
                                     "loss-nan", "loss-oscillation", "grad-data-ratio", "init-scale"),
              "a summed loss makes every SGD step as many times larger as the terms it sums",
              "PyTorch docs, torch.nn.CrossEntropyLoss: reduction"),
    Mechanism("loss-broadcast", ("overfit-one-batch", "loss-plateau", "lr-range", "update-ratio", "init-loss",
                                 "input-independence", "label-problems"),
              "a loss that compares every prediction with every target can only learn the targets' mean",
              "PyTorch docs, F.mse_loss: input and target of the same shape"),
    Mechanism("causal-leak", ("loss-hockey-stick",), "a model that sees the token it must predict copies it",
              "Vaswani et al., 'Attention Is All You Need' (2017), 3.2.3: masking future positions"),
    Mechanism("input-scale", ("saturated-units", "dead-units", "exploding-gradients", "init-loss", "init-scale",
                              "grad-data-ratio", "update-ratio", "lr-range", "loss-oscillation", "grad-spikes"),
              "unstandardised inputs scale every pre-activation of the first layer, and with it the gradients",
              "LeCun, Bottou, Orr & Müller, 'Efficient BackProp' (1998), 4.3: normalising the inputs"),
    Mechanism("target-scale", ("loss-plateau", "overfit-one-batch", "dead-units", "saturated-units", "update-ratio",
                               "lr-range",
                               "grad-spikes", "exploding-gradients", "grad-data-ratio", "loss-oscillation",
                               "loss-divergence", "init-loss", "label-problems"),
              "targets far from unit scale make the loss their squared offset and every gradient as large as "
              "the targets, while the output grows towards them",
              "Bishop, 'Neural Networks for Pattern Recognition' (1995), 8.2: rescaling the target variables"),
    Mechanism("dropout-rate", ("loss-plateau", "overfit-one-batch", "loss-oscillation", "grad-spikes",
                               "label-problems", "input-independence"),
              "dropping most units each step trains a small random slice of every layer, and the output is noise",
              "Srivastava et al., 'Dropout', JMLR 2014: p is the probability to drop, 0.5 for hidden units"),
    Mechanism("amp-overflow", ("loss-plateau", "input-independence", "overfit-one-batch", "lr-range", "update-ratio",
                               "loss-nan", "vanishing-gradients", "exploding-gradients"),
              "steps skipped for inf/NaN and a collapsing loss scale leave the weights where they started",
              "Micikevicius et al., 'Mixed Precision Training', ICLR 2018: loss scaling"),
    # A model can ignore its input from the start for three reasons: a layer with every unit off, a deep
    # stack whose shrinking Jacobian loses the signal forwards as it loses the gradient backwards, or an input
    # that is cut off in the code. The first two are recognised by their own evidence, before the third.
    Mechanism("dead-units", ("input-independence",), "a layer whose every unit is off passes nothing forward",
              "Lu et al., 'Dying ReLU and Initialization' (2019)", when=_whole_layer_dead),
    Mechanism("vanishing-gradients", ("input-independence",), "the shrinking Jacobian that loses the gradient "
              "backwards loses the input's signal forwards", "Glorot & Bengio, AISTATS 2010, section 4"),
    Mechanism("input-independence", ("dead-units", "saturated-units", "loss-plateau", "update-ratio", "lr-range",
                                     "overfit-one-batch", "vanishing-gradients"),
              "a model cut off from its input feeds every unit the same value for every sample",
              "Karpathy, 'A Recipe for Training Neural Networks' (2019): the input-independent baseline"),
    Mechanism("output-not-logits", ("loss-plateau", "init-loss", "overfit-one-batch", "update-ratio", "lr-range",
                                    "vanishing-gradients"),
              "a softmax fed to a loss that applies its own squashes the gradient and floors the loss",
              "PyTorch docs, nn.CrossEntropyLoss: 'The input is expected to contain the unnormalized logits'"),
    Mechanism("weights-not-updating", ("loss-plateau", "update-ratio", "input-independence", "overfit-one-batch",
                                       "lr-range"),
              "parameters the optimizer never steps keep their initial values",
              "PyTorch docs, torch.optim: parameters must be passed to the optimizer"),
    # A setting that shrinks or distorts every step looks like a learning rate far off; the rate's rules see the
    # same small steps and would advise a rate that only papers over the setting.
    Mechanism("optimizer-config", ("lr-range", "update-ratio", "loss-plateau", "grad-data-ratio",
                                   "overfit-one-batch", "vanishing-gradients", "loss-oscillation", "grad-spikes"),
              "Adam's eps, momentum or weight decay sets the step instead of the learning rate",
              "Kingma & Ba, 'Adam', ICLR 2015, algorithm 1; Loshchilov & Hutter, ICLR 2019",
              when=lambda f: f.evidence.get("explains_rate", True)),
    # ... unless the steps would be too small even without eps: then the rate is the larger cause.
    Mechanism(LR_LOW, ("optimizer-config",), "a rate far too low shrinks every step by more than eps does",
              "Kingma & Ba, 'Adam', ICLR 2015, algorithm 1: the step is lr·m̂/(√v̂+eps)",
              effect_when=lambda f: f.evidence.get("explains_rate") is False),
    Mechanism("batch-mixing", ("overfit-one-batch",), "outputs that depend on other samples cannot be fitted "
              "per sample", "PyTorch docs, nn.MultiheadAttention / nn.LSTM: batch_first"),
    Mechanism("init-scale", ("overfit-one-batch", "loss-plateau", "input-independence", "lr-range",
                             "vanishing-gradients", "dead-units"),
              "weights that start at zero pass no signal forward and no gradient back, and their units stay "
              "identical: nothing can be fitted until the symmetry is broken",
              "Goodfellow, Bengio & Courville, 'Deep Learning' (2016), section 8.4: breaking the symmetry",
              when=lambda f: bool(f.evidence.get("zero"))),
    Mechanism("init-scale", ("saturated-units", "dead-units", "vanishing-gradients", "exploding-gradients",
                             "init-loss", "loss-hockey-stick", "grad-data-ratio", "update-ratio"),
              "activations that grow or shrink layer after layer saturate or silence units and scale gradients "
              "the same way", "Glorot & Bengio, AISTATS 2010; He et al., ICCV 2015"),
    Mechanism("init-loss", ("loss-hockey-stick", "grad-spikes", "update-ratio", "lr-range"),
              "confidently wrong logits make the first steps undo the initialisation",
              "Karpathy, makemore part 3 (2022): fixing the initial loss removes the hockey stick"),
    # Saturation already there at step 0 is the hidden layers' own initialisation: in the same lecture it stays
    # after the initial loss is fixed, until the weights feeding the tanh are scaled.
    Mechanism("init-loss", ("saturated-units", "dead-units"),
              "the large gradients of confidently wrong logits push pre-activations into the flat tails (a "
              "ReLU's: below zero for every input)",
              "Karpathy, makemore part 3 (2022)", after_updates=True),
    Mechanism("vanishing-gradients", ("loss-plateau", "update-ratio", "grad-data-ratio", "overfit-one-batch",
                                      "input-independence"),
              "layers far from the loss get almost no gradient, so they barely move",
              "Hochreiter (1991); Glorot & Bengio, AISTATS 2010"),
    Mechanism("saturated-units", ("vanishing-gradients", "loss-plateau", "update-ratio", "dead-units",
                                  "grad-data-ratio", "overfit-one-batch"),
              "a saturated tanh passes (1 - t²) ≈ 0 of the gradient back",
              "Karpathy, makemore part 3 (2022); Glorot & Bengio, AISTATS 2010"),
    Mechanism("overfit-one-batch", ("dead-units",),
              "an activation on the model's output clamps every prediction: its units are off for every target "
              "it cannot reach, the reason the model cannot fit one batch",
              "Karpathy, 'A Recipe for Training Neural Networks' (2019): overfit one batch",
              effect_when=lambda f: bool(f.evidence.get("output"))),
    Mechanism("overfit-one-batch", ("lr-range", "loss-plateau", "update-ratio", "loss-hockey-stick"),
              "a model that cannot fit 8 samples cannot express its targets (an output activation, a wrong loss): "
              "no learning rate fixes that, and the rate test and loss curve reflect it",
              "Karpathy, 'A Recipe for Training Neural Networks' (2019): overfit one batch"),
    Mechanism("exploding-gradients", ("loss-nan", "loss-divergence", "dead-units", "saturated-units",
                                      "input-independence", "loss-plateau", "update-ratio", "lr-range",
                                      "loss-hockey-stick", "grad-spikes", "grad-data-ratio", "vanishing-gradients"),
              "one huge step rewrites the weights: units die or saturate and what is left barely trains",
              "Pascanu, Mikolov & Bengio, ICML 2013"),
    Mechanism(LR_HIGH, ("exploding-gradients", "grad-spikes", "dead-units", "saturated-units",
                        "input-independence", "loss-plateau", "loss-divergence", "loss-nan", "loss-oscillation",
                        "update-ratio", "loss-hockey-stick"),
              "steps larger than the curvature allows overshoot, knock ReLUs off the data for good and can "
              "blow up", "Smith, WACV 2017 (LR range test); Lu et al., 'Dying ReLU and Initialization' (2019)"),
    Mechanism("dead-units", ("input-independence", "vanishing-gradients", "grad-data-ratio", "overfit-one-batch"),
              "a dead ReLU passes no signal forward and no gradient back",
              "Lu et al., 'Dying ReLU and Initialization' (2019); Karpathy, makemore part 3 (2022)"),
    # A flat loss or small steps: explained by dead units where most of a layer is dead, or where the finding does
    # not itself measure steps too small to learn. With fewer than half of a layer's units dead the live ones carry
    # the gradient, and steps too small on them are the rate's (VGG-11 at its recipe's 0.000625 at batch 16: 43%
    # of one layer dead, steps of 10^-4.3; clean at 16x the rate, those units back).
    Mechanism("dead-units", ("loss-plateau", "update-ratio", "lr-range"),
              "a dead ReLU passes no signal forward and no gradient back",
              "Lu et al., 'Dying ReLU and Initialization' (2019); Karpathy, makemore part 3 (2022)",
              when=lambda f: f.severity == "error"),
    Mechanism("dead-units", ("loss-plateau", "update-ratio", "lr-range"),
              "a dead ReLU passes no signal forward and no gradient back",
              "Lu et al., 'Dying ReLU and Initialization' (2019); Karpathy, makemore part 3 (2022)",
              effect_when=lambda f: f.advice != LR_LOW),
    Mechanism("batchnorm-small-batch", ("grad-spikes", "loss-oscillation", "label-problems"),
              "batch statistics of a few samples are noisy, and so is every step: the output follows the batch's "
              "noise more than its own input, as if the labels were unrelated to it",
              "Wu & He, 'Group Normalization', ECCV 2018"),
)


def _tags(f: Finding) -> set[str]:
    return {f.rule} | ({f.advice} if f.advice else set())


def _opposed(a: Finding, b: Finding) -> bool:
    return {a.advice, b.advice} == {LR_HIGH, LR_LOW}


def _rank(f: Finding) -> int:
    return SEVERITY_RANK[f.severity]


def link(findings: list[Finding], removed_by: dict[str, set[str]] | None = None,
         stayed_after: dict[str, set[str]] | None = None) -> list[str]:
    """Fill `explains`, `explained_by` and `because` on the findings; return the root causes' rule ids,
    headline first. `removed_by[r]`: rules whose findings disappeared when r's fix was verified;
    `stayed_after[r]`: rules judged again there that stayed."""
    removed_by, stayed_after = removed_by or {}, stayed_after or {}
    by_rule: dict[str, Finding] = {}
    for f in findings:  # a rule with two findings is one node: the more severe speaks for it
        if f.rule not in by_rule or _rank(f) > _rank(by_rule[f.rule]):
            by_rule[f.rule] = f
    for f in findings:
        f.explains, f.explained_by, f.because, f.fix_moot = [], [], {}, None
    parents: dict[str, dict[str, str]] = {r: {} for r in by_rule}

    def add(cause: str, effect: str, why: str) -> None:
        # No cycles: an effect that already leads to its would-be cause cannot also be its consequence.
        if cause != effect and cause not in parents[effect] and cause not in _below(parents, effect):
            parents[effect][cause] = why

    # (a) counterfactual, the strongest. Two fixes that each remove the other's finding (eps and the learning
    # rate both make Adam's steps larger) are decided by the mechanism table when it names one way only: the
    # specific setting explains the generic knob's evidence, not the reverse. Then fixes that removed the most
    # go first, so that of two fixes of one knob that remove each other's finding, the broader one is the cause.
    for a in sorted(removed_by):
        for b in sorted(removed_by[a] & by_rule.keys()):
            if a in by_rule and a in removed_by.get(b, set()) and _mechanism(by_rule[a], by_rule[b]) and \
                    not _mechanism(by_rule[b], by_rule[a]):
                add(a, b, f"counterfactual: fixing {a} on a copy removed this finding (and {a}'s own evidence "
                    f"explains {b}'s)")
    for cause in sorted(removed_by, key=lambda r: (-len(removed_by[r]), r)):
        if cause in by_rule and by_rule[cause].severity != "info":
            for effect in sorted(removed_by[cause] & by_rule.keys()):
                c, e = by_rule[cause], by_rule[effect]
                # Two findings that advise the same change of the rate: that change removes both whichever is
                # verified, so the counterfactual cannot say which came first. Time does, where both have an onset
                # (the range test, an experiment, has none): units killed at step 13 by steps that were too large
                # from step 0 are the rate's consequence, not its cause.
                if c.advice and c.advice == e.advice and None not in (c.onset, e.onset) and e.onset < c.onset:
                    add(effect, cause, f"counterfactual: {cause}'s fix, a change of the learning rate, removed "
                        f"{effect} on a copy too; both advise that change, and {effect} began first (step "
                        f"{e.onset}; {cause} at step {c.onset})")
                else:
                    add(cause, effect, f"counterfactual: fixing {cause} on a copy removed this finding")
    # (c) mechanisms, in the table's order of precedence, unless time or a counterfactual says otherwise.
    order = sorted(by_rule.values(), key=lambda f: (_onset(f), -_rank(f), f.rule))
    for m in MECHANISMS:
        # Information is not a fault: dead units in a squeeze-excitation gate, off by design, explain no plateau.
        for cause in (f for f in order if f.severity != "info" and m.cause in _tags(f)
                      and (m.when is None or m.when(f))):
            for effect in (f for f in order if f is not cause and f.rule in m.effects
                           and not (m.after_updates and not f.onset)
                           and (m.effect_when is None or m.effect_when(f))):
                if effect.rule in stayed_after.get(cause.rule, set()):
                    continue  # the cause's fix was verified and this finding stayed: not its consequence
                if effect.onset is not None and cause.onset is not None and effect.onset < cause.onset:
                    continue  # began before its supposed cause
                add(cause.rule, effect.rule, f"mechanism: {m.how} ({m.source})")
    # One knob, two roots: opposite advice is decided by the stronger evidence; the same advice is one cause
    # seen by two tests, shown once.
    for a in order:
        for b in order:
            if a is b or not a.advice or not b.advice or parents[a.rule] or parents[b.rule]:
                continue
            first, second = sorted((a, b), key=_strength(parents, by_rule))
            if _opposed(a, b):
                add(first.rule, second.rule, f"{first.rule} and {second.rule} advise opposite learning-rate "
                    f"changes; the evidence for {first.rule} is stronger (its onset, severity and what it explains)")
            elif a.advice == b.advice:
                add(first.rule, second.rule, f"the same learning-rate problem as {first.rule}, seen by another test")
    for effect, causes in parents.items():
        for cause, why in causes.items():
            by_rule[cause].explains.append(effect)
            by_rule[effect].explained_by.append(cause)
            by_rule[effect].because[cause] = why
    for f in findings:  # the second finding of a rule shares its node's links
        node = by_rule[f.rule]
        if f is not node:
            f.explains, f.explained_by, f.because = list(node.explains), list(node.explained_by), dict(node.because)
    roots = [f for f in by_rule.values() if not f.explained_by]
    _moot_fixes_below(roots, parents, findings)
    _opposed_fixes_below(by_rule, parents, findings)
    roots.sort(key=_strength(parents, by_rule))
    # Where one root's fix was proven on a copy (its finding gone, training no worse), a root whose fix left
    # training worse does not lead before it: the proven change comes first.
    outcome = {f.rule: (f.verified or {}).get("outcome") for f in roots}
    if any(o in ("resolved", "improved") for o in outcome.values()):
        roots.sort(key=lambda f: outcome[f.rule] == "worse")
    return [f.rule for f in roots]


def _moot_fixes_below(roots: list[Finding], parents: dict[str, dict[str, str]], findings: list[Finding]) -> None:
    """Under a root whose fix is the only one, the fixes of what it explains lower the training loss without
    touching the cause (labels unrelated to their inputs: a model that memorises faster), so a verified one
    there would contradict the root; each such finding says so instead."""
    for root in roots:
        reason = root.evidence.get("sole_fix")
        if not reason:
            continue
        below = _below(parents, root.rule)
        for f in findings:
            if f.rule in below and f.fix_moot is None:
                f.fix_moot = reason


_DIRECTION = {LR_HIGH: "too high", LR_LOW: "too low"}


def _opposed_fixes_below(by_rule: dict[str, Finding], parents: dict[str, dict[str, str]],
                         findings: list[Finding]) -> None:
    """A consequence that says the rate is too low under a cause that says it is too high (steps made tiny by
    units the rate killed: VGG-13-BN at its recipe's rate), or the reverse, reads from the evidence the
    cause explains: its own fix would undo the cause's, so the report says so instead of advising both."""
    for cause in by_rule.values():
        if cause.advice not in _DIRECTION:
            continue
        below = _below(parents, cause.rule)
        for f in findings:
            if f.rule in below and f.fix_moot is None and _opposed(cause, f):
                f.fix_moot = (f"It reads the learning rate as {_DIRECTION[f.advice]}, where {cause.rule}, which "
                              f"explains it, reads it as {_DIRECTION[cause.advice]}: its own fix would undo "
                              f"{cause.rule}'s. Follow {cause.rule}'s fix.")


def _mechanism(cause: Finding, effect: Finding) -> bool:
    return any(m.cause in _tags(cause) and (m.when is None or m.when(cause)) and effect.rule in m.effects
               and (m.effect_when is None or m.effect_when(effect)) for m in MECHANISMS)


def _onset(f: Finding) -> float:
    return float("inf") if f.onset is None else f.onset


def _below(parents: dict[str, dict[str, str]], rule: str) -> set[str]:
    """Every rule that `rule` explains, directly or through others, in the graph built so far."""
    out, stack = set(), [rule]
    while stack:
        node = stack.pop()
        for child, ps in parents.items():
            if node in ps and child not in out:
                out.add(child)
                stack.append(child)
    return out


def _strength(parents: dict[str, dict[str, str]], severity: dict[str, Finding]):
    """Sort key, strongest first: the worst severity among itself and what it explains, then counterfactual
    support, how much it explains, how much its verified fix lowered the training loss, an earlier onset, its
    own severity."""
    def key(f: Finding):
        below = _below(parents, f.rule)
        proven = sum(why.startswith("counterfactual") for ps in parents.values() for c, why in ps.items()
                     if c == f.rule)
        worst = max([_rank(f)] + [_rank(severity[r]) for r in below if r in severity])
        return (-worst, -proven, -len(below), -_training_gain(f), _onset(f), -_rank(f), f.rule)

    return key


def _training_gain(f: Finding) -> float:
    """How much the verified fix lowered the training loss at the end of the probe (a fraction; 0 unknown):
    of two independent roots, the one change that makes the most difference leads."""
    v = f.verified or {}
    before, after = v.get("loss_before"), v.get("loss_after")
    if before is None or after is None or before <= 0:
        return 0.0
    return (before - after) / before


def consequences(findings: list[Finding], root: str) -> list[Finding]:
    """Every finding a root explains, directly or through others, in report order."""
    by_rule = {f.rule: f for f in findings}
    out, stack = [], [root]
    while stack:
        node = by_rule.get(stack.pop())
        for child in node.explains if node else []:
            if child not in out:
                out.append(child)
                stack.append(child)
    return [f for f in findings if f.rule in out]
