
from auditor.engine import FixPlan, Rule, Threshold
from auditor.report import figures


class MissingZeroGrad(Rule):
    id = "missing-zero-grad"
    summary = "Each update includes gradients left over from earlier updates: zero_grad() is never called."
    from_start = True
    thresholds = {
        "fraction": Threshold(0.5, "fraction of the steps after the first whose update carried the previous "
                              "update's gradient tensors, uncleared",
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
(zero_grad every k backward passes, step every k) is not flagged, nor a second model's backward through this
one between its steps (a GAN's generator loss through the discriminator) when its own zero_grad() follows.
Clearing by hand with `p.grad = None` is seen; clearing in place with `p.grad.zero_()` without any
zero_grad() call is not, and would be flagged.
"""
    references = ("PyTorch docs, torch.optim.Optimizer.zero_grad: gradients accumulate across backward calls",
                  "Karpathy, 'most common neural net mistakes' (2018): 'you forgot to .zero_grad() before .backward()'")

    def check(self, ev, t):
        loop = ev.loop or {}
        carried, checked = loop.get("carried_grads", []), loop.get("carry_checked", 0)
        if checked < 2 or len(carried) / checked < t.fraction:
            return
        first = carried[0]
        yield self.finding(
            "error", "Gradients are never zeroed: each update adds up every earlier gradient",
            f"At {len(carried)} of the {checked} steps after the first, the optimizer stepped with the same "
            f"gradient tensors it had stepped with before, never cleared in between (no zero_grad() covering them, "
            f"no .grad set to None), from step {first}: backward() adds to them, so every update is the sum of "
            "all gradients since the start and the steps grow as training goes on.",
            "Clear the gradients once per step, before backward:\n\n"
            "optimizer.zero_grad()\nloss.backward()\noptimizer.step()",
            [], onset=first, steps=carried[:20])

    metric = "steps whose update carried earlier gradients"

    def plan_fix(self, ev, finding):
        return FixPlan("optimizer.zero_grad() before each step's first backward", zero_grad=True)

    def measure(self, ev, finding):
        return float(len((ev.loop or {}).get("carried_grads", [])))

    def draw(self, ax, ev, finding):
        figures.grad_norm(ax, ev)


RULE = MissingZeroGrad()
