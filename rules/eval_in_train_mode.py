from auditor.engine import FixPlan, Rule

from ._loop import forwards, steps_with


def _effects(kinds: list[str]) -> str:
    said = {"dropout": "dropout was on", "BatchNorm": "BatchNorm updated its running statistics from those batches"}
    return " and ".join(said[k] for k in kinds)


class EvalInTrainMode(Rule):
    id = "eval-in-train-mode"
    summary = "No-grad forwards (validation) run with dropout on and BatchNorm updating its running statistics."
    from_start = True
    why = """
Validation under `torch.no_grad()` but without `model.eval()` runs dropout (the metric is noisy and too
pessimistic) and BatchNorm in training mode: it normalises with each validation batch's own statistics and
updates the running statistics from validation data, so the model that is later evaluated or deployed
carries numbers from the validation set, and a small last batch skews them. The reported validation loss is
not the model's.
"""
    example = """
with torch.no_grad():
    val_loss = criterion(model(x_val), y_val)     # model still in train mode
"""
    use_instead = """
model.eval()
with torch.no_grad():
    val_loss = criterion(model(x_val), y_val)
model.train()
"""
    known_problems = """
Only forwards of the model the optimizer trains are judged, and only when it holds dropout or BatchNorm.
Seen only in `audit run`.
"""
    references = ("PyTorch docs, nn.Module.eval: 'This has an effect only on certain modules ... Dropout, "
                  "BatchNorm'",)

    def check(self, ev, t):
        bad = [f for f in forwards(ev) if not f["grad"] and f["sensitive_training"]]
        if not bad:
            return
        steps = sorted(steps_with(bad, lambda f: True))
        yield self.finding(
            "warning", "Validation (no-grad forwards) runs in training mode",
            f"{len(bad)} forward(s) of the model without gradients (at step(s) "
            f"{', '.join(map(str, steps[:5]))}{' ...' if len(steps) > 5 else ''}) ran with "
            f"{bad[0]['sensitive_training']} {' or '.join(ev.loop.get('mode_modules') or ['dropout', 'BatchNorm'])} "
            f"module(s) in training mode: {_effects(ev.loop.get('mode_modules') or ['dropout', 'BatchNorm'])}.",
            "Switch to eval mode for validation, and back after:\n\n"
            "model.eval()\nwith torch.no_grad():\n    ...\nmodel.train()",
            [ev.loop.get("model", "")], onset=steps[0], steps=steps[:20], forwards=len(bad))

    metric = "forwards without gradients in training mode"
    compares_loss = False  # BatchNorm no longer updated from validation batches changes the training curve too

    def plan_fix(self, ev, finding):
        return FixPlan("model.eval() around every forward without gradients", eval_no_grad=True)

    def measure(self, ev, finding):
        return float(sum(1 for f in forwards(ev) if not f["grad"] and f["sensitive_training"]))


RULE = EvalInTrainMode()
