import numpy as np

from auditor.engine import FixPlan, Rule, Threshold
from auditor.evidence import fmt, smooth
from auditor.report import figures


def step_gain(ev):
    """How much larger than an ordinary step the user's adaptive optimizer steps on a gradient r times the
    usual, with its moments at their steady state (m = g, v = g²): Adam-family (b1 m + (1-b1) r g) /
    sqrt(b2 v + (1-b2) r² g²), RMSprop r / sqrt(alpha + (1-alpha) r²). None for SGD, whose step is r times."""
    o = ev.optimizer or {}
    g = (o.get("groups") or [{}])[0]
    betas = g.get("betas")
    if isinstance(betas, list | tuple) and len(betas) == 2:
        b1, b2 = float(betas[0]), float(betas[1])
        return lambda r: (b1 + (1 - b1) * r) / np.sqrt(b2 + (1 - b2) * r * r)
    if o.get("class") == "RMSprop" and isinstance(g.get("alpha"), int | float):
        a = float(g["alpha"])
        return lambda r: r / np.sqrt(a + (1 - a) * r * r)
    return None


class GradSpikes(Rule):
    id = "grad-spikes"
    harm_is_fixable = True  # a spike that clipping, on a copy, does not matter for is batch noise
    summary = "Rare gradient-norm spikes far above the running median; clip at a norm read off the distribution."
    thresholds = {
        "factor": Threshold(10.0, "a step spikes when its gradient norm is this many times the running median "
                            "(15 steps)", "measured: at most 5.6x on the healthy samples (the GPT's first steps)"),
        "skip": Threshold(5, "steps at the start not judged: the gradient falls from its initial scale there",
                          "measured: the first step's gradient is 15x the later median on the loss-oscillation "
                          "sample, an init transient, not an outlier batch"),
        "quiet_loss": Threshold(0.1, "steps whose running-median loss is below this fraction of the starting loss "
                                "are not judged", "a memorised batch drives gradients towards 0 (seen: 1e-4 on a "
                                "ResNet-18 at loss 0.002), where any ordinary batch is a 'spike'; measured: tiny "
                                "DistilBERT and ALBERT spike 14x and 33x at 5.7% of their starting loss, one seed "
                                "in three, while learning normally"),
        "step_gain": Threshold(2.0, "with an adaptive optimizer, a spike counts only when the step the optimizer "
                               "takes on it is at least this many times an ordinary step",
                               "Adam's step on a gradient r times the usual is (b1 + (1-b1) r) / sqrt(b2 + (1-b2) "
                               "r^2) times the usual (steady-state moments): 1.96x at r=12 with (0.9, 0.999), "
                               "never above (1-b1)/sqrt(1-b2) = 3.2x, and below 1x at b2=0.95 (nanoGPT)"),
        "harm": Threshold(1.0, "a spike counts only when the median loss of the 5 steps after it exceeds this many "
                          "times the median of the 5 before (the spike undid progress)",
                          "measured: timm's EfficientNet-B0 (SGD, batch 16) spikes 10.6x once with its loss still "
                          "falling, median 1.43 before and 0.72 after, and trains on; the sample's corrupt batches "
                          "lift it 2.5x to 1000x. At 1.5 a learning rate 500x too low 'removed' the sample's spikes "
                          "and took the root cause from them"),
        "max_share": Threshold(0.1, "spikes must be rare: at most this share of steps (more is divergence or noise)",
                               "rare outliers, by definition"),
    }
    why = """
A single batch with a gradient ten or a hundred times the usual one (an outlier sample, a near-zero
denominator, a rare token) moves plain SGD's weights by that much more: one step can undo many. Adam divides
the spike by its own second moment, so its step grows far less (at most (1-b1)/sqrt(1-b2) = 3.2x with the
default betas) and the rule judges the step Adam takes, not the raw gradient; the spike still inflates the
second-moment estimate for a while. A spike counts when the loss climbs after it (it undid progress);
one that training shrugs off, its loss still falling, is batch noise. Clipping the global gradient norm just
above the normal range removes the spikes and leaves ordinary steps alone.
"""
    example = """
loss.backward(); optimizer.step()
"""
    use_instead = """
loss.backward()
torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=2.0)   # ~2x the median norm
optimizer.step()
"""
    references = ("R. Pascanu, T. Mikolov, Y. Bengio, 'On the difficulty of training recurrent neural networks', "
                  "ICML 2013", "nanoGPT: grad_clip = 1.0")

    def check(self, ev, t):
        g = ev.grad_norm
        if g.size < 20 or not np.isfinite(ev.loss).all():
            return
        med = smooth(g, 15)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = g / med
        ratio[: int(t.skip)] = np.nan
        # Once the loss nears zero (batches memorised), gradient norms collapse towards zero with it and an
        # ordinary batch looks like a spike against that median: those steps are not judged.
        start = float(np.median(ev.loss[: int(t.skip)]))
        ratio[smooth(ev.loss, 15) < t.quiet_loss * start] = np.nan
        spikes = np.flatnonzero(np.isfinite(ratio) & (ratio > t.factor))
        gain = step_gain(ev)
        if gain is not None:  # an adaptive optimizer divides the spike by its own second moment
            spikes = spikes[gain(ratio[spikes]) >= t.step_gain]
        # A spike that training shrugs off is batch noise; one after which the loss climbs undid progress.
        loss = ev.loss
        spikes = np.array([s for s in spikes if s + 2 < loss.size and np.nanmedian(loss[s + 1: s + 6])
                           > t.harm * np.nanmedian(loss[max(0, s - 5): s])], dtype=int)
        if not spikes.size or spikes.size > t.max_share * g.size:
            return
        normal = g[np.setdiff1d(np.arange(g.size), spikes)]
        clip = float(2 * np.nanmedian(normal))
        yield self.finding(
            "warning", "Rare gradient spikes",
            f"{spikes.size} of {g.size} steps have a gradient norm over {fmt(t.factor)}x the running median "
            f"(steps {', '.join(map(str, spikes[:6]))}; largest {fmt(float(np.nanmax(ratio[spikes])))}x, norm "
            f"{fmt(float(np.nanmax(g[spikes])))} against a median of {fmt(float(np.nanmedian(g)))}).",
            f"Clip the global gradient norm at about twice its median:\n\n"
            f"torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm={fmt(clip)})",
            [], onset=int(spikes[0]), steps=spikes.tolist(), clip=clip, max_ratio=float(np.nanmax(ratio[spikes])))

    def draw(self, ax, ev, finding):
        figures.grad_norm(ax, ev)
        ax.axhline(finding.evidence["clip"], ls="--", color="C3", label="suggested clip")
        ax.legend(fontsize=7)

    metric = "training loss at the end of the probe (median of the last 10 steps)"

    def plan_fix(self, ev, finding):
        clip = finding.evidence["clip"]
        return FixPlan(f"clip_grad_norm_(max_norm={fmt(clip)})", clip_grad_norm=clip)

    def measure(self, ev, finding):
        return float(np.nanmedian(ev.loss[-10:]))


RULE = GradSpikes()
