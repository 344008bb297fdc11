import numpy as np

from auditor.engine import FixPlan, Rule, Threshold
from auditor.evidence import fmt, pct
from auditor.report import figures


def _cleared_steps(ev) -> list[int]:
    loop = ev.loop or {}
    backwards = loop.get("backwards", [])
    none = set(loop.get("grads_none_at_step", []))
    out = []
    for step, count in enumerate(backwards):
        if not count:
            continue
        if step in none:
            out.append(step)
            continue
        norms = [p.grad_norm[step] for p in ev.params if step < p.has_grad.size and p.has_grad[step]]
        if norms and all(np.isfinite(v) and v == 0 for v in norms):
            out.append(step)  # zero_grad(set_to_none=False) between backward and step
    return out


class GradsZeroedBeforeStep(Rule):
    id = "grads-zeroed-before-step"
    summary = "Gradients are cleared between backward() and step(): the optimizer steps on nothing."
    from_start = True
    thresholds = {
        "fraction": Threshold(0.5, "fraction of the steps with a backward pass whose gradients were all cleared "
                              "before step()", "by construction: a working loop has gradients at every step"),
    }
    why = """
`optimizer.zero_grad()` placed after `loss.backward()` and before `optimizer.step()` throws the gradients away
just before they are used: every step sees `.grad` None (or zero), SGD moves nothing, Adam moves only by its
momentum and weight decay. Nothing errors; the loss stays where it started.
"""
    example = """
loss.backward()
optimizer.zero_grad()      # clears what backward just computed
optimizer.step()
"""
    use_instead = """
optimizer.zero_grad()
loss.backward()
optimizer.step()
"""
    known_problems = "Seen only in `audit run` (a script's own loop)."
    references = ("PyTorch docs, 'Zeroing out gradients in PyTorch' recipe: zero_grad before backward",)

    def check(self, ev, t):
        backwards = (ev.loop or {}).get("backwards", [])
        stepped = sum(1 for b in backwards if b)
        cleared = _cleared_steps(ev)
        if not stepped:
            return
        if len(cleared) / stepped < t.fraction:
            yield from self._discarded(ev, t, backwards)
            return
        yield self.finding(
            "error", "Gradients are cleared between backward() and optimizer.step()",
            f"At {len(cleared)} of {stepped} steps, backward() ran but every parameter's gradient was "
            f"{'None' if cleared[0] in set(ev.loop.get('grads_none_at_step', [])) else 'zero'} when "
            f"optimizer.step() was called: something zeroes them in between, so no update uses them.",
            "Keep the order zero_grad(), backward(), step(): move optimizer.zero_grad() before loss.backward() "
            "(or after optimizer.step()), and optimizer.step() after loss.backward():\n\n"
            "optimizer.zero_grad()\nloss.backward()\noptimizer.step()",
            [], onset=cleared[0], steps=cleared[:20])

    def _discarded(self, ev, t, backwards):
        """Backward passes whose gradients a zero_grad() cleared before any step: an optimizer.step() that runs
        only now and then (slid into a logging block), the others' work thrown away."""
        discarded, total = int(ev.loop.get("discarded", 0)), int(sum(backwards))
        if not total or discarded / total < t.fraction or len(ev.loop.get("optimizers", [])) > 1:
            return  # with several optimizers (a GAN), one model's backward is often cleared unused by design
        discarded = min(discarded, total)
        yield self.finding(
            "error", "Most backward passes are cleared before a step uses them",
            f"Of {total} backward passes over {len(backwards)} optimizer steps, {discarded} ({pct(discarded / total)}) "
            "had their gradients cleared by zero_grad() before any optimizer.step() ran: that work is thrown away, "
            f"and the model trains on about one batch in {fmt(total / max(total - discarded, 1), 2)}. An "
            "optimizer.step() inside a condition (an `if batch_idx % log_interval == 0:` block) does this.",
            "Step after every backward (or, to accumulate, clear only after the step):\n\n"
            "optimizer.zero_grad()\nloss.backward()\noptimizer.step()          # not inside the logging `if`",
            [], onset=ev.loop.get("discarded_at", [0])[0], discarded=discarded, backwards=total)

    metric = "backward passes or steps whose gradients no update used"

    def plan_fix(self, ev, finding):
        return FixPlan("zero_grad() moved before backward (the call between backward and step skipped)",
                       zero_grad=True)

    def measure(self, ev, finding):
        return float(len(_cleared_steps(ev)) + int((ev.loop or {}).get("discarded", 0)))

    def draw(self, ax, ev, finding):
        figures.loss_curve(ax, ev)


RULE = GradsZeroedBeforeStep()
