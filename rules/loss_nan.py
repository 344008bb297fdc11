import numpy as np

from auditor.engine import Rule
from auditor.evidence import fmt


class LossNan(Rule):
    id = "loss-nan"
    summary = "The loss is NaN or inf: at step 0 the data or the forward pass produce it, later training blew up."
    thresholds = {}
    why = """
A NaN loss poisons every gradient and, after the next optimizer step, every weight: nothing after it is
training. At step 0, before any update, it comes from the data (NaN or inf in the inputs) or from the
forward pass (log of 0, division by 0, sqrt of a negative number, overflow in fp16). Later, it is the end
of an explosion: the learning rate is too high or gradients are not clipped.
"""
    example = """
probs = logits.softmax(-1)
loss = -probs[range(n), y].log().mean()     # log(0) = -inf when a probability underflows
"""
    use_instead = """
loss = F.cross_entropy(logits, y)           # log-softmax computed stably
X = torch.nan_to_num(X)                     # or drop/impute rows with missing values in the loader
"""
    known_problems = "None known: a non-finite loss is always a defect."
    references = ("PyTorch docs, torch.autograd.detect_anomaly: finding the operation that produced NaN",
                  "Goodfellow, Bengio & Courville, 'Deep Learning' (2016), 4.1: overflow and underflow")

    def check(self, ev, t):
        init_bad = [v for v in ev.initial_losses if not np.isfinite(v)]
        # A script's step that came with no backward before it (a step() before the first backward) has no loss:
        # a gap in the curve, not a NaN the loss produced.
        missing = set((ev.loop or {}).get("no_loss", []))
        bad = np.array([s for s in np.where(~np.isfinite(ev.loss))[0] if int(s) not in missing], dtype=int)
        if not init_bad and bad.size == 0:
            return
        step = 0 if init_bad else int(bad[0])
        value = init_bad[0] if init_bad else ev.loss[step]
        kind = "NaN" if np.isnan(value) else "inf"
        if step == 0:
            inputs = ev.probe.input_nonfinite
            cause = (f"The first batches already contain {inputs} NaN/inf input values." if inputs else
                     "The inputs are finite, so the forward pass or the loss produces it.")
            diagnosis = f"The loss is {kind} at step 0, before any update. {cause}"
            fix = ("Clean the data, or make the forward pass numerically safe:\n\n"
                   "X = torch.nan_to_num(X)                    # in the loader, or drop rows with missing values\n"
                   "loss = F.cross_entropy(logits, y)         # instead of log(softmax(...))\n"
                   "with torch.autograd.detect_anomaly(): loss.backward()   # finds the operation")
        else:
            before = ev.loss[:step]
            diagnosis = (f"The loss became {kind} at step {step}, after {fmt(before[0])} at step 0 and "
                         f"{fmt(before[-1])} just before: training blew up.")
            fix = ("Lower the learning rate and clip the gradient norm:\n\n"
                   "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)\n"
                   "optimizer.step()")
        yield self.finding("error", f"Loss is {kind}", diagnosis, fix, [], onset=step, first_step=step,
                           input_nonfinite=ev.probe.input_nonfinite, steps_run=ev.probe.steps_run)


RULE = LossNan()
