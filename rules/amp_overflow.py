import numpy as np

from auditor.engine import FixPlan, Rule, Threshold
from auditor.evidence import fmt, pct

# The steps whose loss or gradients were not finite: under fp16 the GradScaler skips them, in bf16 or float32
# they are the steps that went wrong. Measurable in every precision, so a bf16 fix can be judged against fp16.


def bad_steps(ev) -> np.ndarray:
    n = ev.probe.steps_run
    bad = ~np.isfinite(ev.loss[:n])
    for p in ev.params:
        steps = p.nonfinite_grad_steps
        bad[steps[steps < n]] = True
    # A script's own GradScaler: the steps its skipped iterations preceded (a skip never reaches step()).
    for s in (ev.amp or {}).get("skipped", []) if ev.loop is not None else []:
        if s < n:
            bad[s] = True
    return bad


class AmpOverflow(Rule):
    id = "amp-overflow"
    needs_checks = True  # the fp16 precision check runs with the experiments
    summary = ("Under fp16 autocast, activations or gradients overflow the fp16 range (65504): the GradScaler "
               "skips step after step and its scale collapses.")
    thresholds = {
        "skipped": Threshold(0.1, "warn when at least this share of the later half of the probe's steps had inf/NaN "
                             "loss or gradients",
                             "a GradScaler starting at 2**16 halves its scale on each overflowing step until the "
                             "gradients fit, then skips one step per growth_interval (2000): its calibration is over "
                             "within the first steps (9 skipped steps for a loss weighted x1000, tests/test_amp.py), "
                             "and the healthy samples skip none in the later half; the overflow sample skips all"),
        "min_scale": Threshold(1.0, "warn when the loss scale ends below this",
                               "below 1 the scaler shrinks the gradients instead of protecting them: they overflow "
                               "fp16 on their own (torch.amp.GradScaler documentation; healthy samples end at 2**15-"
                               "2**16)"),
    }
    why = """
fp16 keeps 5 exponent bits: anything beyond 65504 becomes inf, and inf turns into NaN in the next
subtraction or normalisation. An activation that overflows in the forward pass makes the loss NaN; a
gradient that overflows makes the GradScaler skip the step and halve its scale. Early skipped steps are how
the scaler finds its scale; a scaler that skips step after step, or whose scale falls below 1, is
training nothing. float32 and bfloat16 have 8 exponent bits (up to 3e38), so the same model trains there.
"""
    example = """
model.py:  amp = "fp16"                     # inputs with raw magnitudes (prices, counts, timestamps)
with torch.autocast("cuda", dtype=torch.float16):
    loss = F.cross_entropy(model(x), y)     # x[:, 0] ~ 1e5: the first Linear's output is inf in fp16
"""
    use_instead = """
with torch.autocast("cuda", dtype=torch.bfloat16):   # float32's range, no GradScaler needed
    loss = F.cross_entropy(model(x), y)
# or keep the overflowing layer in float32:
with torch.autocast("cuda", enabled=False):
    h = model.first(x.float())
"""
    known_problems = """
The probe is short: activations that grow during a long run (large transformers late in training) can
overflow long after it. The largest |output| per module is measured on one batch; modules whose outputs are
not fp16 under autocast (softmax, layer_norm, losses run in float32) are not reported.
"""
    references = ("PyTorch documentation, Automatic Mixed Precision: torch.autocast and torch.amp.GradScaler",
                  "Micikevicius et al. 2018, 'Mixed Precision Training' (ICLR): loss scaling",
                  "Kalamkar et al. 2019, 'A Study of BFLOAT16 for Deep Learning Training'")

    def check(self, ev, t):
        from auditor.probe.amp import FP16_MAX  # `audit rules` runs without torch
        amp = ev.amp
        if not amp or amp["mode"] != "fp16" or not ev.probe.steps_run:
            return
        n = ev.probe.steps_run
        bad = bad_steps(ev)
        share = float(bad[n // 2:].mean())  # the scaler's calibration, at the start, is not a defect
        scales = np.asarray(amp["scales"], dtype=float)
        end = float(scales[-1]) if scales.size and np.isfinite(scales[-1]) else None
        prec = amp.get("precision") or {}
        overflow = [name for name, peak in (prec.get("outputs") or {}).items()
                    if not np.isfinite(peak) or peak > FP16_MAX]
        collapsed = end is not None and end < t.min_scale
        if not overflow and share < t.skipped and not collapsed:
            return
        parts = []
        if overflow:
            parts.append(f"In fp16 the output of {overflow[0]} is not finite on the first batch (it is in float32): "
                         f"its values pass 65504, the largest fp16 number"
                         + (f"; {len(overflow) - 1} later module(s) inherit the inf/NaN." if len(overflow) > 1
                            else "."))
        parts.append(f"{int(bad.sum())} of {n} probe steps had an inf/NaN loss or gradient, {pct(share)} of the later "
                     "half" + (", and the GradScaler skipped them" if amp.get("scaler") else "") + ".")
        if end is not None and amp.get("scaler"):
            start = amp["scaler"]["init_scale"]
            parts.append(f"The loss scale went from {fmt(start)} to {fmt(end)}"
                         + (": it has collapsed, nothing is being trained." if collapsed else "."))
        fix = ("Train in bfloat16, which has float32's range and needs no GradScaler"
               + ("; or keep the overflowing layer in float32" if overflow else "") + ":\n\n"
               "with torch.autocast(device_type, dtype=torch.bfloat16):     # instead of torch.float16\n"
               "    loss = loss_fn(model(x), y)"
               + ("\n\nwith torch.autocast(device_type, enabled=False):           # one layer in float32\n"
                  f"    h = model.get_submodule({overflow[0]!r})(x.float())" if overflow else ""))
        yield self.finding("error", "fp16 overflows: steps are skipped" if not overflow else
                           "Activations overflow fp16", " ".join(parts), fix, overflow[:3], onset=int(np.argmax(bad)),
                           share=share, skipped=int(bad.sum()), steps=n, end_scale=end, overflow=overflow)

    metric = "share of steps with inf/NaN loss or gradients"

    def plan_fix(self, ev, finding):
        plans = [FixPlan("train in bfloat16 instead of fp16", amp="bf16")]
        first = (finding.evidence.get("overflow") or [None])[0]
        if first:  # the cheaper fix where only one layer's range is the trouble: fp16 everywhere else
            plans.append(FixPlan(f"layer {first} kept in float32, outside autocast", float32_modules=(first,)))
        return plans

    def measure(self, ev, finding):
        return float(bad_steps(ev).mean()) if ev.probe.steps_run else None

    def draw(self, ax, ev, finding):
        scales = np.asarray((ev.amp or {}).get("scales", []), dtype=float)
        bad = np.flatnonzero(bad_steps(ev))
        if scales.size and np.isfinite(scales).any():
            ok = np.isfinite(scales)
            ax.plot(np.flatnonzero(ok), scales[ok], ".-", lw=1, ms=3, color="C0", label="loss scale")
            ax.set_yscale("log", base=2)
            ax.set_ylabel("GradScaler scale")
        for i, s in enumerate(bad):
            ax.axvline(s, color="C3", lw=0.6, alpha=0.6, label="inf/NaN step" if i == 0 else None)
        ax.set_xlabel("probe step")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)


RULE = AmpOverflow()
