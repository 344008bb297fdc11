import numpy as np

from auditor.engine import FixPlan, Rule, Threshold
from auditor.evidence import fmt
from auditor.report import figures


class MissingZeroGrad(Rule):
    id = "missing-zero-grad"
    summary = "Each update includes gradients left over from earlier updates: zero_grad() is never called."
    from_start = True
    thresholds = {
        "fraction": Threshold(0.5, "fraction of the checked steps whose first backward found gradients still "
                              "held from before the last update",
                              "by construction: a loop that zeroes its gradients leaves none at every step; "
                              "half allows a loop that zeroes only sometimes to be named too"),
    }
    why = """
`loss.backward()` adds to `.grad`; it does not overwrite it. A loop that never calls
`optimizer.zero_grad()` (or `model.zero_grad()`) steps with the sum of every gradient since the start: the
update grows with each step, momentum-free SGD turns into a runaway, and Adam's normalised steps keep pointing
the way the first batches did. The loss falls for a few steps, then oscillates or diverges. This is the
first bug on most lists of training-loop mistakes, and no loss curve names it.
"""
    example = """
for x, y in loader:
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()                  # .grad keeps every earlier batch's gradient
"""
    use_instead = """
for x, y in loader:
    optimizer.zero_grad()             # or set_to_none (the default), or model.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
"""
    known_problems = """
Seen only in `audit run` (a script's own loop): the replay zeroes the gradients itself. Gradient accumulation
(zero_grad every k backward passes, step every k) is not flagged: the first backward after each step finds
the gradients cleared. Checked on the first steps and on the measured ones.
"""
    references = ("PyTorch docs, torch.optim.Optimizer.zero_grad: gradients accumulate across backward calls",
                  "Karpathy, 'most common neural net mistakes' (2018): 'you forgot to .zero_grad() before .backward()'")

    def check(self, ev, t):
        stale = (ev.loop or {}).get("stale_grad", {})
        checked = [s for s in range(1, ev.probe.steps_run)]
        if not ev.loop or len(checked) < 2:
            return
        left = {s: v for s, v in stale.items() if np.isfinite(v) and v > 0}
        looked = max(len([s for s in checked if s < 4 or s % ev.probe.stats_every == 0 or s == ev.probe.steps - 1]), 1)
        if len(left) / looked < t.fraction:
            return
        first = min(left)
        yield self.finding(
            "error", "Gradients are never zeroed: each update adds up every earlier gradient",
            f"At {len(left)} of the {looked} steps checked, `.grad` already held gradients (norm "
            f"{fmt(left[first])} at step {first}) before the step's first backward: nothing cleared them after "
            f"the last optimizer.step(). Every update is the sum of all gradients since the start, so the steps "
            f"grow as training goes on.",
            "Clear the gradients once per step, before backward:\n\n"
            "optimizer.zero_grad()\nloss.backward()\noptimizer.step()",
            [], onset=first, steps=sorted(left), stale_norms=[left[s] for s in sorted(left)])

    metric = "steps whose update carried earlier gradients"

    def plan_fix(self, ev, finding):
        return FixPlan("optimizer.zero_grad() before each step's first backward", zero_grad=True)

    def measure(self, ev, finding):
        return float(sum(1 for v in (ev.loop or {}).get("stale_grad", {}).values() if np.isfinite(v) and v > 0))

    def draw(self, ax, ev, finding):
        figures.grad_norm(ax, ev)


RULE = MissingZeroGrad()
