import numpy as np

from auditor.engine import FixPlan, Rule
from auditor.evidence import fmt
from auditor.report import figures

ELEMENTWISE = {"mse": "F.mse_loss", "l1": "F.l1_loss", "huber": "F.huber_loss", "smooth_l1": "F.smooth_l1_loss"}


def _shapes(ev):
    call = ev.loss_call or {}
    if call.get("kind") not in ELEMENTWISE or call.get("target_shape") is None:
        return None
    a, b = tuple(call["input_shape"]), tuple(call["target_shape"])
    if a == b:
        return None
    try:
        out = tuple(np.broadcast_shapes(a, b))
    except ValueError:
        return None
    # More elements than the output has: predictions are compared with other samples' targets.
    return (a, b, out) if int(np.prod(out)) > int(np.prod(a)) else None


def _align(output_shape):
    """The targets reshaped to the output's shape when they hold one value per output: (B,) -> (B, 1)."""
    def transform(batch):
        if not (isinstance(batch, list | tuple) and len(batch) == 2):
            return batch
        x, y = batch
        if y.ndim == len(output_shape) - 1 and output_shape[-1] == 1:
            y = y.unsqueeze(-1)
        elif y.ndim == len(output_shape) + 1 and y.shape[-1] == 1:
            y = y.squeeze(-1)
        return type(batch)((x, y))
    return transform


class LossBroadcast(Rule):
    id = "loss-broadcast"
    summary = "An elementwise loss compares output and targets of different shapes, which broadcast silently."
    from_start = True
    why = """
`F.mse_loss(output, target)` with an output of shape (B, 1) and targets of shape (B,) does not compare each
prediction with its target: broadcasting turns both into (B, B) and compares every prediction with every
target in the batch. The loss is finite, the model trains, and all it can learn is the mean of the targets:
it cannot even overfit one batch. Torch warns once ("Using a target size ... that is different to the input
size"), on stderr, where it scrolls past.
"""
    example = """
pred = model(x)                      # (B, 1)
loss = F.mse_loss(pred, y)           # y: (B,) -> compared as (B, B)
"""
    use_instead = """
loss = F.mse_loss(pred.squeeze(-1), y)     # or y.unsqueeze(-1): the same shape on both sides
"""
    known_problems = """
Read off the functional loss the user's code calls (mean-squared error, L1, Huber, smooth L1). A hand-written
((pred - y) ** 2).mean() broadcasts the same way without torch's warning, and is not seen here; the
overfit-one-batch experiment then catches its effect.
"""
    references = ("PyTorch docs, torch.nn.functional.mse_loss: input and target of the same shape; NumPy "
                  "broadcasting rules",)
    metric = "loss's input and target shapes differ (1) or match (0)"
    metric_goal = "lower"
    needs_checks = True  # the overfit-one-batch experiment it explains is run again on the fixed copy

    def check(self, ev, t):
        found = _shapes(ev)
        if not found:
            return
        a, b, out = found
        kind = ev.loss_call["kind"]
        n = int(np.prod(out)) / max(int(np.prod(a)), 1)
        yield self.finding(
            "error", f"The loss broadcasts the output {a} against targets {b}",
            f"{ELEMENTWISE[kind]} is called with the model's output of shape {a} and targets of shape {b}; they "
            f"broadcast to {out}, so every prediction is compared with {fmt(n)} targets instead of its own, and "
            "the best the model can learn is their mean.",
            "Give both sides the same shape:\n\n"
            + ("loss = F.mse_loss(output.squeeze(-1), target)" if a[-1:] == (1,) else
               "loss = F.mse_loss(output, target.squeeze(-1))" if b[-1:] == (1,) else
               "loss = F.mse_loss(output, target.view_as(output))"),
            [], input_shape=list(a), target_shape=list(b), broadcast_shape=list(out))

    def plan_fix(self, ev, finding):
        shape = tuple(finding.evidence["input_shape"])
        return FixPlan(f"targets reshaped to the output's shape {shape}", batch_transform=_align(shape))

    def measure(self, ev, finding):
        return 1.0 if _shapes(ev) else 0.0

    def draw(self, ax, ev, finding):
        figures.loss_curve(ax, ev)


RULE = LossBroadcast()
