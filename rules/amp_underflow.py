from auditor.engine import FixPlan, Rule, Threshold
from auditor.evidence import fmt, pct
from auditor.report import figures

DEFAULT_SCALE = 2.0**16  # torch.amp.GradScaler's init_scale


def flushed(ev) -> dict[str, float]:
    """Per layer: the share of gradient elements non-zero in float32 and zero in fp16, on module outputs and
    parameters alike (the precision check of auditor/probe/amp.py)."""
    prec = (ev.amp or {}).get("precision") or {}
    rows = {name: row["flushed"] for name, row in (prec.get("grads") or {}).items() if row["nonzero"]}
    rows.update({name: row["flushed"] for name, row in (prec.get("params") or {}).items() if row["nonzero"]})
    return rows


class AmpUnderflow(Rule):
    id = "amp-underflow"
    needs_checks = True
    reads = ("amp",)
    summary = "Under fp16 autocast, a share of the gradient elements flush to zero: the loss scale is too small."
    thresholds = {
        "flushed": Threshold(0.05, "warn when at least this share of a layer's gradient elements are non-zero in "
                             "float32 but zero in fp16",
                             "measured on the 7 healthy samples in fp16 with the default GradScaler: at most 1.5% "
                             "(healthy_gpt's attention projection; healthy_resnet 0.16%, the rest <= 0.05%); the "
                             "underflow sample (no GradScaler, loss averaged over 2048 tokens and 32 accumulation "
                             "steps) flushes 99.7% of its logit gradients"),
        "error": Threshold(0.25, "error at this share", "a quarter of a layer's gradient lost is a different "
                           "training run, not noise (measured like `flushed`)"),
    }
    why = """
fp16's smallest positive number is 6e-8 (2**-24). A gradient element below it becomes exactly 0: that part of
the update is lost, silently, every step. Averaged losses over many tokens or pixels, loss weights and
gradient accumulation make gradients small; a GradScaler multiplies the loss (2**16 by default) before
backward so that they stay representable, and divides it out before the step. fp16 without a scaler, or with
a scale set too low, trains a different model than float32 would.
"""
    example = """
with torch.autocast("cuda", dtype=torch.float16):
    loss = F.cross_entropy(logits.view(-1, V), y.view(-1)) / accumulation_steps
loss.backward()                      # no GradScaler: gradients below 6e-8 become 0
"""
    use_instead = """
scaler = torch.amp.GradScaler("cuda")          # init_scale 2**16, adjusted as training goes
scaler.scale(loss).backward()
scaler.step(optimizer)
scaler.update()
"""
    known_problems = """
Measured on one batch from the initial weights, at the scale the probe's scaler reached. Elements that are zero
in float32 too (dead ReLU units, tokens not in the batch) are not counted. bfloat16 has float32's exponent range
and does not underflow this way.
"""
    references = ("Micikevicius et al. 2018, 'Mixed Precision Training' (ICLR), section 3.2: loss scaling",
                  "PyTorch documentation, torch.amp.GradScaler", "IEEE 754-2008: binary16 subnormal range")

    def check(self, ev, t):
        amp = ev.amp
        if not amp or amp["mode"] != "fp16":
            return
        rows = flushed(ev)
        if not rows:
            return
        worst = max(rows, key=rows.get)
        share = rows[worst]
        if share < t.flushed:
            return
        scale = ((amp.get("precision") or {}).get("scale"))
        over = sorted((n for n, v in rows.items() if v >= t.flushed), key=rows.get, reverse=True)
        scaler = amp.get("scaler")
        how = (f"with a GradScaler at scale {fmt(scale)}" if scaler else "without a GradScaler (scale 1)")
        yield self.finding(
            "error" if share >= t.error else "warning", "fp16 gradients underflow to zero",
            f"In fp16 {how}, {pct(share)} of the gradient elements at {worst} that are non-zero in float32 are "
            f"exactly zero; {len(over)} layer(s) lose at least {pct(t.flushed)}. Those parts of every update are "
            "lost.",
            ("Scale the loss with a GradScaler (its default init_scale is 2**16), or train in bfloat16:\n\n"
             "scaler = torch.amp.GradScaler(device_type)\n"
             "scaler.scale(loss).backward()\nscaler.step(optimizer)\nscaler.update()") if not scaler or
            (scale or 0) < DEFAULT_SCALE else
            ("Train in bfloat16 (float32's exponent range):\n\n"
             "with torch.autocast(device_type, dtype=torch.bfloat16):\n    loss = loss_fn(model(x), y)"),
            over[:5], onset=0, worst_share=share, scale=scale, flushed=rows)

    metric = "share of fp16 gradient elements flushed to zero (worst layer)"

    def plan_fix(self, ev, finding):
        scale = finding.evidence.get("scale") or 1.0
        if scale < DEFAULT_SCALE:
            return FixPlan("a GradScaler starting at 2**16", scaler_init=DEFAULT_SCALE)
        return FixPlan("train in bfloat16 instead of fp16", amp="bf16")

    def measure(self, ev, finding):
        rows = flushed(ev)
        if rows:
            return max(rows.values())
        return 0.0 if ev.amp and ev.amp["mode"] == "bf16" else None

    def draw(self, ax, ev, finding):
        rows = finding.evidence.get("flushed") or {}
        figures.bars(ax, list(rows), [100 * v for v in rows.values()], "% of gradient elements flushed in fp16",
                     highlight=finding.layers[:1])


RULE = AmpUnderflow()
