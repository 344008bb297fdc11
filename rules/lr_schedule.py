import numpy as np

from auditor.engine import FixPlan, Rule, Threshold
from auditor.evidence import fmt


def _collapse(lr: np.ndarray, t) -> tuple[int, int, float] | None:
    """(peak step, first step below peak/fall, steps spent there) when the rate falls that far and training goes
    on at the low rate for a while; a schedule that reaches its floor only at the end of the run is not one."""
    ok = np.isfinite(lr) & (lr >= 0)
    if ok.sum() < 3:
        return None
    lr = np.where(ok, lr, np.nan)
    peak = int(np.nanargmax(lr))
    top = lr[peak]
    if not top > 0:
        return None
    low = np.flatnonzero(lr[peak:] < top / t.fall) + peak
    if not low.size:
        return None
    spent = int(low.size)
    if spent < max(t.min_steps, t.min_fraction * len(lr)):
        return None
    return peak, int(low[0]), spent


def _cycles(lr: np.ndarray) -> int:
    """How often the rate comes back above half its peak after falling below a tenth of it."""
    top = np.nanmax(lr) if np.isfinite(lr).any() else 0
    if not top > 0:
        return 0
    state, count = "start", 0  # a warm-up rising from near zero is not a cycle
    for v in lr[np.isfinite(lr)]:
        if state == "start" and v > top / 2:
            state = "high"
        elif state == "high" and v < top / 10:
            state = "low"
        elif state == "low" and v > top / 2:
            state, count = "high", count + 1
    return count


def _runaway(ev, t):
    """A hand-written LambdaLR whose factor keeps growing: `lambda step: step / warmup` without its cap."""
    for s in (ev.loop or {}).get("lambda_schedules", []):
        f, at = s["factors"], s["at"]
        if not (np.isfinite(f).all() and f[-1] > t.runaway and f[-1] > 2 * f[-2] > 0):
            continue
        base, group = s["base_lr"], f" (parameter group {s['group']})" if s["group"] else ""
        yield RULE.finding(
            "warning", "The learning rate grows without bound: a warm-up without its cap",
            f"The LambdaLR schedule's factor{group} is {fmt(f[0])} at step {at[0]}, "
            f"{fmt(f[1])} at step {at[1]} and {fmt(f[2])} at step {at[2]}: the base rate {fmt(base)} becomes "
            f"{fmt(base * f[1])}, then {fmt(base * f[2])}, and never levels off. A warm-up written as "
            "`step / warmup` without its min(1, ...) does this; the run is stable only while the rate is still small.",
            "Cap the warm-up at the base rate:\n\n"
            "scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))",
            [], factors=f, at=at, base_lr=base, runaway=True)
        return


class LrSchedule(Rule):
    id = "lr-schedule"
    summary = "The learning rate collapses (or cycles) within the first steps: an epoch schedule stepped per batch."
    from_start = True
    # Only a runaway warm-up has no mechanical fix: a collapsing schedule's is proved (stepped once per epoch).
    unverified_because = "the fix is in the schedule's own lambda, which the auditor does not rewrite"
    metric = "log10 of the lowest rate after the peak, over the peak"
    metric_goal = 0.0
    # A rate held where the schedule collapsed it ends a 100-step probe at a higher, noisier loss than the decayed
    # one: the short-horizon bias (Wu, Ren, Liao & Grosse, ICLR 2018). The collapse costs the rest of the run,
    # which the probe does not see; the rate's own metric judges the fix. (ReduceLROnPlateau stepped on every
    # batch's loss: 0.50 decayed, 0.68 held, at step 100.)
    compares_loss = False
    thresholds = {
        "fall": Threshold(100.0, "the rate has fallen by more than this factor from its peak",
                          "issue 20: a schedule meant for epochs and stepped per batch falls by 10-1000x within "
                          "a hundred steps (StepLR(step_size=30, gamma=0.1): 1000x at step 90)"),
        "min_steps": Threshold(5, "the low rate must last at least this many steps",
                               "a cosine or one-cycle schedule that ends within the steps seen reaches its floor "
                               "only on its last steps; training at that floor for longer is the collapse"),
        "min_fraction": Threshold(0.1, "... and at least this fraction of the steps seen", "as min_steps"),
        "runaway": Threshold(10.0, "a LambdaLR factor above this at 100x the probe's length, and still rising "
                             "(double its value at 10x), is a rate that never levels off",
                             "a capped warm-up, linear or cosine decay, Noam's schedule: at most 1 there; "
                             "step / warmup without min(1, ...) with warm-up 20 over 100 steps: 500"),
    }
    why = """
Schedules are written in the unit their author stepped them in. `StepLR(step_size=30, gamma=0.1)`,
`MultiStepLR(milestones=[30, 60])` and `CosineAnnealingLR(T_max=epochs)` count epochs; called after every
batch instead of every epoch, they decay 100 to 1000 times faster than meant. The learning rate falls to
nothing within the first few hundred steps and the model stops learning (or, for cosine with T_max in
epochs, the rate cycles up and down every few batches). The loss curve shows a plateau that looks like
convergence.
"""
    example = """
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30, gamma=0.1)   # 30 epochs
for epoch in range(90):
    for x, y in loader:
        ...
        optimizer.step()
        scheduler.step()          # stepped per batch: 0.1x every 30 batches
"""
    use_instead = """
for epoch in range(90):
    for x, y in loader:
        ...
        optimizer.step()
    scheduler.step()              # once per epoch, as its step_size means
"""
    known_problems = """
Judged on the rates the optimizer held at each step the audit saw. In a model.py audit the replay steps
`make_scheduler()`'s schedule after every optimizer step (as that contract says), so a schedule written in
epochs is flagged there too: step it per epoch in your job, or give make_scheduler its per-step form.
A hand-written LambdaLR is also read ahead of the probe, at 10x and 100x its length, for a factor that
keeps growing (a warm-up without its cap): in `audit run` only, where the script's own scheduler is seen.
A schedule that really is meant to fall this fast (a very short fine-tuning run) can switch this rule off
with --ignore lr-schedule. In a model.py audit (and the trainer callbacks), a schedule whose rate reaches
exactly zero within the probe is taken as a short job's schedule ending, not judged: the replay cannot know
the job's length (a script's own loop shows whether training went on at zero).
"""
    references = ("PyTorch docs, 'How to adjust learning rate': scheduler.step() after the epoch's optimizer steps",
                  "Smith, 'Cyclical Learning Rates for Training Neural Networks' (2017): cycles measured in "
                  "iterations, epoch schedules in epochs")

    def check(self, ev, t):
        yield from _runaway(ev, t)
        if ev.lrs is None or not len(ev.lrs):
            return
        lrs = np.asarray(ev.lrs, dtype=float)
        for g in range(lrs.shape[1]):
            lr = lrs[:, g]
            if ev.loop is None and lr[-1] == 0:
                # The replay steps a schedule for its own 100 steps, whatever the job's length: one that decays
                # to exactly zero (linear, cosine to 0) ended there, and a short job ends with it.
                continue
            found = _collapse(lr, t)
            where = f" (parameter group {g})" if lrs.shape[1] > 1 else ""
            if found:
                peak, first, spent = found
                yield self.finding(
                    "error", "The learning rate collapses within the first steps",
                    f"The rate fell from {fmt(lr[peak])} at step {peak} to {fmt(np.nanmin(lr[peak:]))}{where}, "
                    f"below 1/{t.fall:g} of its peak from step {first} on, and training went on there for {spent} "
                    f"of the {len(lr)} steps seen. A schedule written in epochs that is stepped after every batch "
                    "falls this way; the model stops learning long before the run ends.",
                    "Step an epoch schedule once per epoch, after the epoch's batches:\n\n"
                    "for epoch in range(epochs):\n    for x, y in loader:\n        ...\n        optimizer.step()\n"
                    "    scheduler.step()\n\nor express it in steps (T_max=epochs * len(loader)); ReduceLROnPlateau: "
                    "once per epoch, on the validation loss (scheduler.step(val_loss)), not on each batch's noise.",
                    [], onset=first, peak=float(lr[peak]), low=float(np.nanmin(lr[peak:])), first_low=first)
                return
            cycles = _cycles(lr)
            if cycles:
                yield self.finding(
                    "warning", "The learning rate cycles within the first steps",
                    f"The rate{where} fell below a tenth of its peak {fmt(np.nanmax(lr))} and came back above half of "
                    f"it {cycles} time(s) within {len(lr)} steps: a cosine schedule whose T_max counts epochs, "
                    "stepped after every batch, oscillates this way.",
                    "Step the schedule once per epoch, or give it its length in steps "
                    "(T_max=epochs * len(loader)).",
                    [], cycles=cycles)
                return

    def plan_fix(self, ev, finding):
        if finding.evidence.get("runaway"):
            return None  # the fix is in the user's lambda
        n = ev.probe.steps
        return FixPlan(f"the schedule stepped once per epoch instead of every step (held over the {n}-step probe)",
                       scheduler_every=n)

    def measure(self, ev, finding):
        if ev.lrs is None or not len(ev.lrs):
            return None
        lr = np.asarray(ev.lrs, dtype=float)[:, 0]
        top = np.nanmax(lr)
        return float(np.log10(np.nanmin(lr[int(np.nanargmax(lr)):]) / top)) if top > 0 else None

    def draw(self, ax, ev, finding):
        lrs = np.asarray(ev.lrs, dtype=float)
        for g in range(min(lrs.shape[1], 4)):
            ax.plot(np.arange(len(lrs)), lrs[:, g], ".-", lw=1, ms=3, label=f"group {g}")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("learning rate")
        ax.legend(fontsize=6.5)
        ax.grid(alpha=0.3)


RULE = LrSchedule()
