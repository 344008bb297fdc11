import numpy as np

from auditor.causes import LR_LOW
from auditor.engine import FixPlan, Rule, Threshold
from auditor.evidence import end_level, fifths, fmt, loss_prefix, pct, update_level

from ._residual import branch_ends, suffixes

# The share of the probe a verified warm-up spans: half, so that the second half, the last fifth the rise is judged
# on included, runs at the user's full rate; a rate too high throughout climbs again there.
WARMUP_SHARE = 0.5


class LossPlateau(Rule):
    id = "loss-plateau"
    summary = ("The loss does not fall over the probe: flat (tiny learning rate, vanishing gradients, a broken graph) "
               "or climbing, short of loss-divergence's bar.")
    thresholds = {
        "min_drop": Threshold(0.05, "warn when the loss falls by less than this fraction over the probe (named a "
                              "rise when it climbs by this fraction, over its first fifth or the loss before any "
                              "update, or climbs and ends within this fraction of that loss)",
                              "measured: healthy samples fall 25-95% over a 100-step probe"),
        "min_steps": Threshold(20, "steps needed to judge the curve", "windows of 20% need a few samples each"),
        "tiny_updates": Threshold(-4.0, "name the learning rate as the plateau's cause when the median layer's "
                                  "log10 ‖Δw‖/‖w‖ is below this", "a decade under the lecture's healthy ~-3; "
                                  "measured healthy recipes: -1.8 to -3.0 (update-ratio's calibration)"),
    }
    why = """
From a fresh initialisation a working setup lowers the loss within tens of steps. A flat curve means the
updates do nothing useful: the learning rate is far too small, gradients vanish before they reach the
weights, or the parameters being updated are not the ones the loss depends on.
"""
    example = """
optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
"""
    use_instead = """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)   # or Adam(lr=1e-3); check update-ratio ~1e-3
"""
    known_problems = """
A model that starts from trained weights may already sit at its floor; fine-tuning audits can ignore this
rule. Very noisy losses (tiny batches) need a longer probe (--steps). A script with two optimizers (a GAN,
audited with `audit run`) is not judged: each player's loss is held up by the other by design.
"""
    references = ("A. Karpathy, 'A Recipe for Training Neural Networks' (2019)",
                  "Goodfellow, Bengio & Courville, 'Deep Learning' (2016), 8.2: plateaus")

    def check(self, ev, t):
        if (ev.loop or {}).get("other_optimizers"):
            return  # two players (a GAN): each one's loss is held up by the other by design, not a plateau
        seq = loss_prefix(ev)
        if seq.size < t.min_steps:
            return
        start, end, k = fifths(seq)
        if start <= 1e-8:
            return
        drop = (start - end) / abs(start)
        init = ev.probe.start_loss
        init = init if init is not None and np.isfinite(init) and init > 0 else None
        # A fall that only undoes the first steps' climb (ResNet-152 at one seed: 2.5 before any update, spikes to
        # 26, the last fifth back at 2.9) is no fall: measured from the loss before any update, it rose.
        back = init is not None and start >= (1 + t.min_drop) * init and end >= (1 - t.min_drop) * init
        if (drop >= t.min_drop and not back) or end > 2 * start:  # rising is loss-divergence's finding
            return
        level, _ = update_level(ev)
        # Flat after a climb in the first steps (ResNeXt-101 at one seed: 2.31 at initialisation, 3.75 -> 3.68
        # after) is a rise too, measured from the loss before any update.
        above_init = init is not None and end >= (1 + t.min_drop) * init
        if drop <= -t.min_drop or above_init or back:
            # Below loss-divergence's bar but no plateau: a climb says nothing of vanishing gradients (they flatten
            # a curve), and what does push it up (steps too large for this draw, batch statistics too noisy) the
            # rules about the rate, spikes and overshoot judge on their own evidence.
            if drop <= -t.min_drop:
                rise = f"rose from {fmt(start)} to {fmt(end)} (+{pct(-drop)}; medians of the first and last fifth)"
            elif above_init:
                rise = (f"rose from {fmt(init)} before any update to {fmt(end)} (+{pct(end / init - 1)}; the last "
                        "fifth's median) and stayed there")
            else:
                rise = (f"climbed from {fmt(init)} before any update (the first fifth's median {fmt(start)}, the "
                        f"highest {fmt(float(seq.max()))}) and fell back only to {fmt(end)}, no lower than where it "
                        "began")
            ends = branch_ends(ev)
            diagnosis = (f"Over {seq.size} steps the loss {rise}, with {ev.probe.optimizer}. A setup that works "
                         "lowers it within tens of steps; one that climbs is taking steps too large for this network "
                         "and batch, or learning something other than its targets.")
            fix = ("Add a warm-up (over the first few hundred steps), or lower the learning rate 3-10x, and look at "
                   "the loss curve for the batches that jump:\n\nscheduler = torch.optim.lr_scheduler.LinearLR("
                   "optimizer, start_factor=0.1, total_iters=500)  # scheduler.step() after each optimizer.step()")
            if ends:
                names = ", ".join(f'".{x}"' for x in suffixes(ends))
                diagnosis += (f" {len(ends)} residual blocks ({ends[0]} ... {ends[-1]}) end their branch in a norm "
                              "whose gain starts at 1, so each adds its branch at full scale from the first step "
                              "and the sum swings with every update.")
                fix = ("Start each residual block as the identity: zero the gain of the norm that ends its branch "
                       "(Goyal et al. 2017; torchvision's zero_init_residual=True, timm's default), or lower the "
                       "learning rate 3-10x:\n\nfor name, m in model.named_modules():\n"
                       f"    if name.endswith(({names},)):  # the norm that ends each residual branch\n"
                       "        nn.init.zeros_(m.weight)")
            yield self.finding("warning", "Loss rises instead of falling", diagnosis, fix, ends,
                               start=start, end=end, drop=drop, update_log10=level, rise=True)
            return
        leaving = _leaving(seq, k, start, t)
        if leaving is not None and not (np.isfinite(level) and level < t.tiny_updates):
            # Flat, then falling at the probe's end at a pace that clears the bar: a slow start that is ending
            # (the saddle at the origin of a product of two factors that start at or near zero: word2vec's zero
            # output embeddings, a deep linear stack at small init; Saxe et al. 2014), not gradients that vanish.
            yield self.finding(
                "info", "Loss flat at first, falling at the end of the probe",
                f"Over {seq.size} steps the loss went from {fmt(start)} to {fmt(end)} ({pct(drop)}), but over the last "
                f"{k} steps it fell {pct(leaving)} of its start per {seq.size} steps, fast enough to clear the "
                f"{pct(t.min_drop)} bar: a slow start that is ending, not a stall. Weights that start at or near "
                "zero in a product (each factor's gradient is proportional to the other) start this way.",
                f"Audit more steps (--steps {2 * seq.size}) to see the fall through; to start sooner, draw the "
                "factor that starts at zero small and random, or raise the learning rate.",
                [], start=start, end=end, drop=drop, update_log10=level, leaving=leaving)
            return
        if np.isfinite(level) and level < t.tiny_updates:
            cause = f"The updates are tiny (10^{fmt(level, 2)} of the weights per step): the learning rate is too low."
            advice = LR_LOW
        else:
            advice = None
            cause = ("The updates are not tiny, so look for gradients that vanish before the weights, or a loss "
                     "that does not depend on the parameters being updated.")
        yield self.finding(
            "warning", "Loss plateaus",
            f"Over {seq.size} steps the loss went from {fmt(start)} to {fmt(end)} ({pct(drop)}). {cause}",
            "Raise the learning rate, or fix the gradient flow (see update-ratio and vanishing-gradients):\n\n"
            "optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)",
            [], advice=advice, start=start, end=end, drop=drop, update_log10=level)

    metric = "loss over the probe's last fifth"

    def plan_fix(self, ev, finding):
        """A rise in a net of residual blocks at full scale: their gains at zero first (measured, it is what makes a
        deep ResNet learn, where a tenth of the rate only steadies it), the rate as the alternative. Any other rise:
        a warm-up first, which keeps the user's rate and tells a start too violent for it (Adam's first steps,
        before its second moment has settled: Liu et al. 2020) from a rate too high throughout, which climbs again
        once the warm-up is over (the rules of the rate name that); a tenth of the rate as the alternative."""
        if not finding.evidence.get("rise"):
            return None
        ends = finding.layers  # a rise's layers are its residual blocks' ends
        if ends:
            plans = [FixPlan(f"the gains of {len(ends)} residual blocks' last norms at zero",
                             param_edits=tuple((f"{e}.weight", "fill", 0.0) for e in ends))]
        else:
            n = max(2, int(ev.probe.steps * WARMUP_SHARE))
            plans = [FixPlan(f"a linear warm-up from a tenth of the rate over the first {n} steps", warmup=n)]
        if ev.probe.lr:
            plans.append(FixPlan(f"learning rate {ev.probe.lr / 10:.2g} (a tenth)", lr=ev.probe.lr / 10))
        return plans

    def measure(self, ev, finding):
        return end_level(ev)


def _leaving(seq: np.ndarray, k: int, start: float, t) -> float | None:
    """The fall per probe length, as a fraction of the start, at the pace of the last fifth: where that pace is
    significant (a least-squares slope 3 standard errors below zero) and would clear min_drop over a probe, the
    loss is leaving its plateau. A steady slow fall (a rate too low) cannot pass: had it kept that pace throughout
    it would have cleared the bar already."""
    tail = np.asarray(seq[-k:], dtype=float)
    x = np.arange(k, dtype=float) - (k - 1) / 2
    slope = float((x * (tail - tail.mean())).sum() / (x * x).sum())
    resid = tail - tail.mean() - slope * x
    se = float(np.sqrt((resid * resid).sum() / max(k - 2, 1) / (x * x).sum()))
    pace = -slope * seq.size / start
    if slope < 0 and slope < -3 * se and pace >= t.min_drop:
        return pace
    return None


RULE = LossPlateau()
