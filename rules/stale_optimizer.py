from auditor.engine import FixPlan, Rule


class StaleOptimizer(Rule):
    id = "stale-optimizer"
    summary = "The optimizer steps parameters the training forward does not use (built for a replaced model)."
    from_start = True
    why = """
An optimizer holds references to the parameter tensors it was given. Build it, then replace the model
(`model = Net()` again, a reload, `model = model.to(device)` on a module whose `.to` returns a copy, a
wrapper built afterwards that copies the weights), and it steps tensors that nothing uses: the model that
runs gets gradients that no optimizer applies, and the loss never moves.
"""
    example = """
model = Net()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model = Net()                      # a new instance: the optimizer still holds the first one's tensors
"""
    use_instead = """
model = Net()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)     # built after the model's final form
"""
    known_problems = "Seen only in `audit run`."
    references = ("PyTorch docs, torch.optim: 'If you need to move a model to GPU via .cuda(), please do so "
                  "before constructing optimizers for it'",)

    def check(self, ev, t):
        stale = (ev.loop or {}).get("stale_optimizer")
        if not stale:
            return
        yield self.finding(
            "error", "The optimizer trains a different model from the one that runs",
            f"None of the optimizer's {stale['optimizer_tensors']} parameter tensors belongs to the "
            f"{stale['model']} that the script runs with gradients ({stale['model_tensors']} trainable tensors); "
            f"{stale['optimizer_grads']} of the optimizer's tensors had a gradient at its first step. The "
            "optimizer was built for a model instance that was later replaced.",
            "Build the optimizer after the model's final form (after any re-creation, loading or wrapping):\n\n"
            "model = build_model()\noptimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)",
            [stale["model"]], **stale)

    metric = "median loss of the last 10 steps"
    unverified_because = "the fix is where the script builds its optimizer"

    def plan_fix(self, ev, finding):
        return FixPlan("the running model's parameters given to the optimizer", add_missing_params=True)

    def measure(self, ev, finding):
        import numpy as np

        tail = ev.loss[-10:]
        return float(np.median(tail)) if tail.size and np.isfinite(tail).all() else None


RULE = StaleOptimizer()
