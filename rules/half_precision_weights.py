import numpy as np

from auditor.engine import Rule, Threshold
from auditor.evidence import fmt, pct

# float16's smallest subnormal, 2**-24: any eps below it is stored as 0 in a float16 optimizer state.
FLOAT16_TINIEST = 2.0 ** -24


class HalfPrecisionWeights(Rule):
    id = "half-precision-weights"
    from_start = True
    summary = ("The optimizer updates float16 weights (model.half()): steps under 1/2048 of a weight round away, "
               "and Adam's eps=1e-8 is 0 in float16, so an underflowed second moment divides by zero.")
    thresholds = {
        "share": Threshold(0.5, "warn when at least this share of the optimizer's elements are float16",
                           "Micikevicius et al. 2018: float16 training keeps a float32 master copy of the weights"),
    }
    why = """
`model.half()` makes the weights, their gradients and the optimizer's state float16, which keeps 11
significant bits: an update smaller than about 1/2048 of the weight it is added to rounds away, so small
learning rates and late-training steps do nothing. Adam's default eps=1e-8 is below float16's smallest
number (6e-8) and is stored as 0; where a gradient is small its second moment underflows to 0 too, and the
update divides zero by zero. Mixed precision (autocast with a GradScaler) runs the forward in float16 and
keeps the weights and the optimizer in float32 (Micikevicius et al., 'Mixed Precision Training', ICLR 2018).
"""
    example = """
model = Net().half()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)        # eps=1e-8 is 0 in float16
"""
    use_instead = """
model = Net()                                                     # float32 weights
scaler = torch.amp.GradScaler()
with torch.autocast("cuda", dtype=torch.float16):
    loss = loss_fn(model(x), y)
scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update()
"""
    known_problems = ("bfloat16 weights are not flagged: their range holds eps, and recipes that train them do so "
                      "on purpose.")
    references = ("P. Micikevicius et al., 'Mixed Precision Training', ICLR 2018: float32 master weights",
                  "PyTorch docs, 'Automatic Mixed Precision'")

    def check(self, ev, t):
        weights = ev.probe.weights or {}
        dtypes = weights.get("dtypes") or {}
        total, half = sum(dtypes.values()), dtypes.get("float16", 0)
        if not total or half / total < t.share:
            return
        eps = weights.get("eps")
        zero_eps = eps is not None and 0 < eps < FLOAT16_TINIEST
        blew_up = not np.isfinite(ev.loss).all()
        text = (f"{pct(half / total)} of the optimizer's {total} elements are float16 (model.half()), so "
                f"{ev.probe.optimizer} updates them in float16: a step under about 1/2048 of a weight rounds away.")
        if zero_eps:
            text += (f" Its eps={fmt(eps)} is 0 in float16 (below {fmt(FLOAT16_TINIEST)}): where a gradient's second "
                     "moment underflows, the update divides zero by zero.")
        if blew_up:
            text += " The loss turned non-finite."
        yield self.finding(
            "error" if zero_eps or blew_up else "warning", "The weights are float16",
            text,
            "Keep the weights and the optimizer in float32 and run the forward in float16 under autocast, with a "
            "GradScaler (mixed precision):\n\nmodel = model.float()\nscaler = torch.amp.GradScaler()\n"
            "with torch.autocast(device_type=\"cuda\", dtype=torch.float16):\n    loss = loss_fn(model(x), y)\n"
            "scaler.scale(loss).backward()\nscaler.step(optimizer)\nscaler.update()",
            [], onset=0, half_share=half / total, eps=eps, eps_is_zero=zero_eps)


RULE = HalfPrecisionWeights()
