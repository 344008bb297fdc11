from auditor.engine import FixPlan, Rule, Threshold

from ._loop import forwards, steps_with


class TrainInEvalMode(Rule):
    id = "train-in-eval-mode"
    summary = "Updates computed with the model in eval mode: dropout off, BatchNorm on its running statistics."
    from_start = True
    thresholds = {
        "fraction": Threshold(0.1, "fraction of the steps seen whose training forwards ran in eval mode",
                              "by construction: a loop that calls model.train() before training has none; "
                              "0.1 names a model.eval() left on after a first evaluation within the steps seen"),
    }
    why = """
`model.eval()` switches dropout off and makes BatchNorm normalise with its running statistics instead of
the batch's. A loop that evaluates (`model.eval()`) and never calls `model.train()` again trains the rest of
the run in eval mode: the regularisation is gone, and BatchNorm's running statistics, no longer updated,
normalise with the numbers of the first epoch, so the network trains against a normalisation that does not
match its activations. The loss still falls, worse than it should; nothing errors.
"""
    example = """
for epoch in range(epochs):
    for x, y in loader: ...           # trains in eval mode from the second epoch on
    model.eval()
    validate(model)
"""
    use_instead = """
for epoch in range(epochs):
    model.train()
    for x, y in loader: ...
    model.eval()
    validate(model)
"""
    known_problems = """
Only the model the optimizer trains is judged, and only when it holds dropout or BatchNorm (the modules whose
behaviour depends on the mode). Freezing BatchNorm on purpose (`m.eval()` on the BatchNorm modules alone,
as detection fine-tuning does) keeps the model's own flag in training mode and is not flagged. Seen only in
`audit run`.
"""
    references = ("PyTorch docs, nn.Module.train / eval: affects Dropout and BatchNorm",
                  "Karpathy, 'most common neural net mistakes' (2018): 'you forgot to toggle train/eval mode'")

    def check(self, ev, t):
        fwds = [f for f in forwards(ev) if f["grad"] and f["sensitive"]]
        trained = steps_with(fwds, lambda f: f["training"])
        # Grad-enabled forwards in eval mode at steps with no training-mode forward: the update's own forward.
        in_eval = sorted(steps_with(fwds, lambda f: not f["training"] and f["sensitive_training"] == 0) - trained)
        n = ev.probe.steps_run
        if not in_eval or len(in_eval) < max(t.fraction * n, 2):
            return
        first = in_eval[0]
        kinds = " and ".join(ev.loop.get("mode_modules") or ["dropout", "BatchNorm"])
        yield self.finding(
            "error" if len(in_eval) > n / 2 else "warning",
            "The model trains in eval mode",
            f"From step {first}, {len(in_eval)} of the {n} steps seen computed their update with the model in "
            f"eval mode ({kinds} in inference behaviour): the loop set model.eval() and did not set "
            f"model.train() again before training.",
            "Call model.train() at the start of every training epoch (after any evaluation):\n\n"
            "for epoch in range(epochs):\n    model.train()\n    for x, y in loader:\n        ...",
            [ev.loop.get("model", "")], onset=first, steps=in_eval[:20])

    metric = "steps trained in eval mode"
    compares_loss = False  # dropout back on raises the training loss: that is the fix working

    def plan_fix(self, ev, finding):
        return FixPlan("model.train() before every training forward", train_mode=True)

    def measure(self, ev, finding):
        fwds = [f for f in forwards(ev) if f["grad"] and f["sensitive"]]
        trained = steps_with(fwds, lambda f: f["training"])
        return float(len(steps_with(fwds, lambda f: not f["training"] and f["sensitive_training"] == 0) - trained))


RULE = TrainInEvalMode()
