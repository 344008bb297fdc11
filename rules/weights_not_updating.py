import numpy as np

from auditor.engine import FixPlan, Rule
from auditor.report import figures


def _frozen(ev) -> list[str]:
    """Tensors with non-zero gradients whose values never changed on any measured step, and that the optimizer
    cannot move (left out of it, or in a group with learning rate 0). A tensor the optimizer does step but
    whose update is below float precision (vanishing gradients) is not one: update-ratio and
    vanishing-gradients say why it does not move."""
    out = []
    for p in ev.params:
        if p.name not in ev.probe.not_stepped:
            continue
        moved = p.update_rms[np.isfinite(p.update_rms)]
        grads = p.grad_norm[p.has_grad & np.isfinite(p.grad_norm)]
        if p.received_grad and grads.size and grads.max() > 0 and moved.size and moved.max() == 0:
            out.append(p.name)
    return out


def _frozen_output(ev) -> list[str]:
    """The output layer's own parameters when every one of them has requires_grad=False: a head frozen with
    the body it replaced (or never unfrozen) stays at its random initialisation, and everything else learns to
    feed a fixed random projection. Freezing is deliberate for a backbone, almost never for the layer that
    produces the output."""
    names = list(getattr(ev.structure, "output_params", None) or [])
    trainable = {p.name for p in ev.params}
    return names if names and not any(n in trainable for n in names) else []


def _why(ev, names: list[str]) -> str:
    reasons = {}
    for n in names:
        reasons.setdefault(ev.probe.not_stepped[n], []).append(n)
    return "; ".join(f"{', '.join(ns[:3])}{' ...' if len(ns) > 3 else ''} {'are' if len(ns) > 1 else 'is'} {why}"
                     for why, ns in reasons.items())


class WeightsNotUpdating(Rule):
    id = "weights-not-updating"
    from_start = True
    summary = "Parameters that get gradients but never move (left out of the optimizer, lr 0), or get no gradient."
    why = """
A parameter with a gradient that the optimizer never changes is dead weight: it was left out of the
parameter list given to the optimizer (a second module created after the optimizer, a forgotten group), or
its group's learning rate is 0. The network trains with part of itself frozen at its random initialisation,
and nothing errors. Parameters with requires_grad=True that never receive a gradient are unused by the
forward pass (or cut off by a detach): that is reported as info, since freezing can be deliberate. An output
layer with requires_grad=False is a warning: a backbone is frozen on purpose, the head that produces the
output almost never.
"""
    example = """
optimizer = torch.optim.SGD(model.head.parameters(), lr=0.1)    # the body is never updated
"""
    use_instead = """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
"""
    references = ("PyTorch docs, torch.optim: 'To construct an Optimizer you have to give it an iterable "
                  "containing the Parameters ... to optimize'",)

    def check(self, ev, t):
        frozen = _frozen(ev)
        unused = [p.name for p in ev.params if not p.received_grad]
        if frozen:
            total = sum(int(np.prod(p.shape)) for p in ev.params if p.name in frozen)
            yield self.finding(
                "error", "Parameters get gradients but are never updated",
                f"{len(frozen)} parameter tensor(s) ({total:,} values: {', '.join(frozen[:5])}"
                f"{' ...' if len(frozen) > 5 else ''}) receive non-zero gradients at every step, yet did not "
                f"change by a single bit over the probe with {ev.probe.optimizer}: "
                f"{_why(ev, frozen)}.",
                "Give the optimizer every trainable parameter (build it after the whole model):\n\n"
                "optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)\n"
                "# or add the missing ones: optimizer.add_param_group({'params': missing})",
                frozen, frozen=frozen)
        head = _frozen_output(ev)
        if head:
            layer = head[0].rsplit(".", 1)[0]
            yield self.finding(
                "warning", "The output layer is frozen",
                f"{', '.join(head)} (the layer that produces the model's output) "
                f"{'has' if len(head) == 1 else 'have'} requires_grad=False: it stays at its random initialisation "
                "and the rest of the network can only learn to feed a fixed random projection.",
                "Unfreeze the output layer and give it to the optimizer:\n\n"
                f"for p in model.get_submodule({layer!r}).parameters():\n    p.requires_grad_(True)\n"
                "optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)",
                head, frozen_output=head)
        reached = [p for p in ev.params if p.received_grad]
        if unused and not reached and not frozen and _unreached(ev):
            yield self.finding(
                "error", "The loss does not reach the model's parameters",
                f"A loss was backpropagated at every step, yet none of the model's {len(unused)} trainable "
                "parameter tensors ever got a gradient: the loss is not computed from the model's output through "
                "autograd (a value rebuilt from .item(), torch.tensor(...), .detach(), .data or a NumPy round-trip), "
                "so backward() stops before the model and nothing trains.",
                "Compute the loss from the model's output tensor, and log its value separately:\n\n"
                "loss = criterion(model(x), y)      # not torch.tensor(criterion(...).item(), requires_grad=True)\n"
                "loss.backward()\noptimizer.step()\nprint(loss.item())",
                unused[:5], unused=unused, disconnected=True)
            return
        if unused:
            yield self.finding(
                "info", "Parameters that never receive a gradient",
                f"{', '.join(unused[:5])}{' ...' if len(unused) > 5 else ''} require grad but got no gradient in "
                "any step: the forward pass does not use them, or a detach cuts them off. Fine if deliberate.",
                "Remove unused modules, or freeze them explicitly:\n\n"
                "for p in model.unused.parameters():\n    p.requires_grad_(False)",
                unused, unused=unused)

    def draw(self, ax, ev, finding):
        names = [p.name for p in ev.params]
        values = [float(np.nanmax(p.update_rms)) if np.isfinite(p.update_rms).any() else 0.0 for p in ev.params]
        figures.bars(ax, names, [max(v, 1e-12) for v in values], "largest RMS update over the probe", log=True,
                     highlight=finding.layers)

    metric = "parameter tensors with gradients that never move"

    def plan_fix(self, ev, finding):
        if finding.severity == "info" or finding.evidence.get("disconnected"):
            return None  # a loss cut off from the model is code to rewrite, not a setting to change
        if "frozen_output" in finding.evidence:
            names = finding.evidence["frozen_output"]

            def unfreeze(model):
                for n in names:
                    model.get_parameter(n).requires_grad_(True)
            return FixPlan("the output layer unfrozen and added to the optimizer", model_edit=unfreeze,
                           add_missing_params=True)
        return FixPlan("the parameters missing from the optimizer added as a parameter group",
                       add_missing_params=True)

    def measure(self, ev, finding):
        return len(_frozen_output(ev)) if "frozen_output" in finding.evidence else len(_frozen(ev))


def _unreached(ev) -> bool:
    """Backward ran and reached no parameter: in a script, at most steps with no zero_grad() since the backward
    (else a misplaced zero_grad cleared them: grads-zeroed-before-step's); in a replay, at every step."""
    if not (ev.loss.size and np.isfinite(ev.loss).any()):
        return False
    loop = ev.loop
    if loop is None:
        return True
    backed = sum(1 for b in loop.get("backwards", []) if b)
    return bool(backed) and len(loop.get("grads_unreached_at_step", [])) >= 0.5 * backed


RULE = WeightsNotUpdating()
