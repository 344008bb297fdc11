import numpy as np

from auditor.engine import Rule, Threshold
from auditor.evidence import fmt, loss_prefix, pct


class LossHockeyStick(Rule):
    id = "loss-hockey-stick"
    summary = "A fast early drop that only undoes a bad initialisation, then slow progress."
    thresholds = {
        "excess_nats": Threshold(1.0, "only judged when the first loss exceeds -ln(1/C) by this many nats",
                                 "same as init-loss"),
        "mse_ratio": Threshold(4.0, "for MSE, when the first loss exceeds mean(target^2) this many times",
                               "same as init-loss"),
        "early_fraction": Threshold(0.2, "the early phase: this fraction of the probe's steps", "lecture's curve"),
        "early_share": Threshold(0.5, "warn when the early phase holds this share of the probe's loss decrease",
                                 "makemore raw sample: 60% in the first 20% of steps"),
        "min_steps": Threshold(20, "steps needed to judge the curve", "the early phase needs a few steps"),
    }
    why = """
When the initial loss is far above -ln(1/C), the first phase of training does nothing but shrink the
logits back to a sane scale: the loss plunges, then crawls. Those steps are wasted, and the weights they
leave behind are not those a good initialisation would have produced. The lecture's loss curve has exactly
this hockey-stick shape until the output layer is initialised small.
"""
    example = """
W2 = torch.randn(n_hidden, vocab_size)      # loss 27 at init; a hockey-stick curve follows
"""
    use_instead = """
W2 = torch.randn(n_hidden, vocab_size) * 0.01
b2 = torch.zeros(vocab_size)
"""
    known_problems = "Needs the expected initial loss, as init-loss does; silent under a training_step."
    references = ("A. Karpathy, makemore part 3 (2022): the hockey-stick loss",)

    def check(self, ev, t):
        from auditor.probe.lossspy import CLASSIFICATION  # `audit rules` runs without torch
        p = ev.probe
        seq = loss_prefix(ev)
        if p.expected_initial_loss is None or seq.size < t.min_steps:
            return
        first, expected = float(seq[0]), p.expected_initial_loss
        # Whether the start is bad is read on init-loss's own measure, the loss at initialisation over several
        # batches: the first training batch alone is one draw (timm's LCNet: 3.54 on it against 2.3 expected,
        # a bad start at one thread count and not at another).
        start = p.initial_loss if p.initial_loss is not None and np.isfinite(p.initial_loss) else first
        classification = p.num_classes or p.loss_fn in CLASSIFICATION
        bad_start = (start - expected >= t.excess_nats) if classification else (start >= t.mse_ratio * expected)
        if not bad_start:
            return
        n = seq.size
        k = max(2, int(n * t.early_fraction))
        w = max(2, n // 10)
        at_k = float(np.median(seq[max(0, k - w // 2): k + w // 2 + 1]))
        end = float(np.median(seq[-w:]))
        total = first - end
        if total <= 0:
            return
        share = (first - at_k) / total
        early_slope, late_slope = (first - at_k) / k, max(at_k - end, 0) / max(n - k, 1)
        if share < t.early_share or early_slope < 3 * late_slope:
            return
        yield self.finding(
            "warning", "Hockey-stick loss: early steps only undo the initialisation",
            f"{pct(share)} of the loss decrease over the probe came in the first {k} of {n} steps "
            f"({fmt(first)} to {fmt(at_k)}), {fmt(early_slope / max(late_slope, 1e-12), 2)}x faster than "
            f"afterwards, starting far above the expected {fmt(expected)}: those steps shrink a bad init.",
            "Initialise the output layer small so training starts at the expected loss (see init-loss):\n\n"
            "with torch.no_grad():\n    head.weight.mul_(0.01)\n    head.bias.zero_()",
            [], early_share=share, early_steps=k, first=first, at_early_end=at_k, end=end)


RULE = LossHockeyStick()
