import numpy as np

from auditor.causes import LR_LOW
from auditor.engine import FixPlan, Rule, Threshold
from auditor.evidence import end_level, fifths, fmt, is_adaptive, loss_prefix, pct
from auditor.report import figures


class ClipTooTight(Rule):
    id = "clip-too-tight"
    from_start = True
    harm_is_fixable = True  # clipping that binds while the loss falls anyway is the user's choice, not a fault
    summary = ("clip_grad_norm_ cuts nearly every step's gradient to a small fraction of its norm under a "
               "non-adaptive optimizer, and the loss does not fall: the clipping, not the rate, sets the step.")
    thresholds = {
        "binding": Threshold(0.9, "warn when clipping shrinks the gradient on at least this share of the steps",
                             "Pascanu, Mikolov & Bengio 2013: clipping is for the rare exploding step; a threshold "
                             "that binds on every step turns SGD into normalised SGD at lr x max_norm"),
        "max_ratio": Threshold(0.1, "... and the median max_norm / norm is below this (steps cut 10x or more)",
                               "measured: 0.01 against the sample MLP's norm of 0.35 cuts every step to 0.028 of "
                               "it, and against the corpus CNN's 0.60 to 0.017 (both a plateau that clipping at "
                               "twice the median norm ends: 1.56 -> 0.27, 2.29 -> 1.25)"),
        "min_drop": Threshold(0.05, "... and the loss fell by less than this fraction (medians of the first and "
                              "last fifth): clipping that binds while the loss falls is a choice "
                              "(pytorch/examples' word language model clips at 0.25 under SGD at lr 20)",
                              "loss-plateau's bar"),
        "min_steps": Threshold(20, "clipped steps needed to judge", "loss-plateau's window"),
    }
    why = """
`clip_grad_norm_(params, max_norm)` rescales the gradient to `max_norm` whenever its norm is larger. Set far
below the norm the gradients have (0.01 where they are ~1: a value meant for `clip_grad_value_`, a misplaced
decimal), it binds on every step, and under SGD each update becomes `lr * max_norm` in the gradient's
direction, whatever the gradient's size: a learning rate cut by the ratio, which the rate itself does not
show. Adam-family optimizers divide the gradient by its own running scale, so a constant cut changes little
there, and the rule stays silent for them.
"""
    example = """
loss.backward()
torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.01)   # the gradients' norm is ~0.35
optimizer.step()                                                    # SGD: every step ~35x shorter
"""
    use_instead = """
torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)    # binds only on the rare spike
"""
    known_problems = ("Seen only in `audit run` (clipping is the script's own), for torch.nn.utils.clip_grad_norm_; "
                      "clip_grad_value_ and optimizers that clip inside their step are not read.")
    references = ("R. Pascanu, T. Mikolov & Y. Bengio, 'On the difficulty of training recurrent neural "
                  "networks', ICML 2013",)

    def check(self, ev, t):
        if is_adaptive(ev):
            return  # a constant cut rescales Adam's first and second moments alike: the update barely moves
        clips = _norm_clips(ev)
        if len(clips) < t.min_steps:
            return
        norms = np.array([c["norm"] for c in clips], dtype=float)
        max_norm = float(np.median([c["max_norm"] for c in clips]))
        ratio = np.array([c["max_norm"] for c in clips]) / norms
        binding, median_ratio = float(np.mean(ratio < 1)), float(np.median(ratio))
        seq = loss_prefix(ev)
        if binding < t.binding or median_ratio > t.max_ratio or seq.size < t.min_steps:
            return
        start, end, _ = fifths(seq)
        drop = (start - end) / abs(start) if start else 0.0
        if drop >= t.min_drop:
            return
        suggested = float(2 * np.median(norms))
        yield self.finding(
            "warning", "Gradient clipping cuts every step",
            f"clip_grad_norm_(max_norm={fmt(max_norm)}) shrank the gradient on {pct(binding)} of {len(clips)} "
            f"steps, to a median {fmt(median_ratio)} of its norm (the norm's median {fmt(float(np.median(norms)))}), "
            f"under {ev.probe.optimizer}: each update is the rate times {fmt(max_norm)} in the gradient's "
            f"direction, a rate {fmt(1 / median_ratio, 2)}x lower in effect. The loss went from {fmt(start)} to "
            f"{fmt(end)} ({pct(drop)}).",
            "Clip at about twice the norm the gradients have, so that only the rare spike is cut:\n\n"
            f"torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm={fmt(suggested)})",
            [], onset=int(clips[0]["step"]), advice=LR_LOW, max_norm=max_norm, binding=binding,
            median_ratio=median_ratio, suggested=suggested, drop=drop)

    metric = "loss over the probe's last fifth"

    def draw(self, ax, ev, finding):
        clips = _norm_clips(ev)
        figures.curves(ax, {"gradient norm before clipping": ([c["step"] for c in clips], [c["norm"] for c in clips])},
                       "step", "global gradient norm", logy=True,
                       hlines={f"max_norm {fmt(finding.evidence['max_norm'])}": finding.evidence["max_norm"],
                               f"suggested {fmt(finding.evidence['suggested'])}": finding.evidence["suggested"]})

    def plan_fix(self, ev, finding):
        return FixPlan(f"clip_grad_norm_ at max_norm={fmt(finding.evidence['suggested'])} (twice the median norm)",
                       clip_max_norm=finding.evidence["suggested"])

    def measure(self, ev, finding):
        return end_level(ev)


def _norm_clips(ev) -> list[dict]:
    """The script's clip_grad_norm_ calls on unscaled gradients, with the norm each measured."""
    return [c for c in (ev.loop or {}).get("clips", []) if c.get("function") == "clip_grad_norm_"
            and not c.get("scaled") and c.get("max_norm") and np.isfinite(c.get("norm", np.nan)) and c["norm"] > 0]


RULE = ClipTooTight()
