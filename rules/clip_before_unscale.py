from auditor.engine import FixPlan, Rule


class ClipBeforeUnscale(Rule):
    id = "clip-before-unscale"
    summary = "Gradients are clipped while still multiplied by the GradScaler's scale."
    from_start = True
    why = """
With a GradScaler, `scaler.scale(loss).backward()` leaves every gradient multiplied by the loss scale (65536
at the start). Clipping them to a norm of 1.0 before `scaler.unscale_(optimizer)` clips the scaled norm:
the real gradients are then clipped to 1/65536 of the intended norm, so training barely moves; and when
the scale changes, so does the effective clipping. PyTorch's AMP recipe unscales first.
"""
    example = """
scaler.scale(loss).backward()
torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)     # on scaled gradients
scaler.step(optimizer)
"""
    use_instead = """
scaler.scale(loss).backward()
scaler.unscale_(optimizer)
torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
scaler.step(optimizer)
scaler.update()
"""
    known_problems = "Seen only in `audit run`, for clip_grad_norm_ and clip_grad_value_ called as torch.nn.utils' own."
    references = ("PyTorch docs, 'Automatic Mixed Precision examples': working with unscaled gradients "
                  "(gradient clipping)",)

    def check(self, ev, t):
        clips = [c for c in (ev.loop or {}).get("clips", []) if c["scaled"]]
        if not clips:
            return
        steps = sorted({c["step"] for c in clips})
        scale = ((ev.loop or {}).get("scaler") or {}).get("init_scale") or 0
        yield self.finding(
            "error", "Gradients are clipped before the GradScaler unscales them",
            f"{clips[0]['function']} ran at {len(steps)} step(s) (from step {steps[0]}) on gradients still "
            f"multiplied by the GradScaler's scale{f' (starting at {scale:g})' if scale else ''}: the clipping "
            "threshold applies to the scaled norm, so the real gradients are clipped far below it.",
            "Unscale before clipping:\n\nscaler.scale(loss).backward()\nscaler.unscale_(optimizer)\n"
            "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)\nscaler.step(optimizer)\nscaler.update()",
            [], onset=steps[0], steps=steps[:20])

    metric = "clipping calls on scaled gradients"

    def plan_fix(self, ev, finding):
        return FixPlan("scaler.unscale_(optimizer) before clipping", unscale_before_clip=True)

    def measure(self, ev, finding):
        return float(sum(1 for c in (ev.loop or {}).get("clips", []) if c["scaled"]))


RULE = ClipBeforeUnscale()
