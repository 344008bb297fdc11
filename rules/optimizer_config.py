import numpy as np

from auditor.engine import FixPlan, Rule, Threshold
from auditor.evidence import fmt, pct, update_level
from auditor.report import figures

# torch's defaults, which the fixes restore.
ADAM_EPS = 1e-8


class OptimizerConfig(Rule):
    id = "optimizer-config"
    summary = ("An optimizer setting, read against the measured gradients, defeats the learning rate: an eps "
               "that outweighs √v, momentum at or above 0.999, or weight decay that shrinks the weights faster "
               "than they learn.")
    thresholds = {
        "eps_share": Threshold(0.5, "eps: judge when √v̂ is below eps for at least this share of the weights' "
                               "elements (eps, not the gradient, sets most steps)",
                               "Adam's update is lr·m̂/(√v̂+eps): where eps > √v̂ the step is under lr/2"),
        "eps_update": Threshold(-3.5, "eps: ... and the median layer's log10 ‖Δw‖/‖w‖ is below this (steps too "
                                "small to learn)", "half a decade under the slowest healthy recipe measured (-3.0, "
                                "Adam 3e-4; update-ratio's calibration); Adam with eps=1 on an MLP regression: -4.1. "
                                "A large eps with healthy steps (RMSprop's 0.0316 in the MobileNetV3 recipe) is a "
                                "choice, not a bug. The same bar says whether eps explains the small steps: with "
                                "the level they would have without it (+log10 (eps+√v̂)/√v̂) still below, the rate "
                                "is too low as well (MobileNetV3's recipe at lr/1000: 38x from eps, 3230x short by "
                                "the LR range test) and the rate's rules lead"),
        "momentum": Threshold(0.999, "momentum (SGD) or beta1 (Adam) at or above this",
                              "an average over ~1/(1-m) steps: 1000 steps at 0.999, so each step follows gradients "
                              "hundreds of steps old (Sutskever et al. 2013 use at most 0.999 late in training, "
                              "with a small rate)"),
        "decay_per_step": Threshold(0.01, "weight decay: warn when lr x weight_decay, the share of each weight "
                                    "removed every step, is at least this",
                                    "standard recipes: 1e-5 (SGD 0.1, 1e-4) to 9e-4 (ViT AdamW 3e-3, 0.3); at "
                                    "0.01 the weights halve every 70 steps whatever the data says"),
    }
    why = """
The learning rate is only one of the optimizer's knobs, and the others can defeat it. Adam divides each
step by √v̂ + eps: an eps far above the gradient's root-mean-square turns Adam into SGD at rate lr/eps, and
the updates shrink by the same factor, which looks exactly like a learning rate far too low. Momentum at
0.999 averages a thousand steps of gradients, so the update follows where the loss was, not where it is.
Weight decay removes lr x wd of every weight each step; far above the gradient's pull, it drives the
weights to zero instead of to a solution.
"""
    example = """
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1.0)      # eps >> sqrt(v): SGD at lr 1e-3
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.999)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=5.0)  # 5% of every weight each step
"""
    use_instead = """
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)               # eps=1e-8
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05)
"""
    known_problems = """
The eps test needs the optimizer's second moment, so it reads Adam, AdamW, NAdam, RAdam, Adamax, RMSprop
and Adagrad; under torchrun, where the state may be sharded, only the settings are judged. An eps raised on
purpose for stability (1e-6 in fp16, RMSprop's 0.0316 in the TensorFlow-style MobileNet recipe) is not
reported while the updates it leaves are of a healthy size.
"""
    references = ("Kingma & Ba, 'Adam', ICLR 2015, algorithm 1",
                  "Sutskever, Martens, Dahl & Hinton, 'On the importance of initialization and momentum in deep "
                  "learning', ICML 2013",
                  "Loshchilov & Hutter, 'Decoupled Weight Decay Regularization', ICLR 2019")
    from_start = True
    needs_checks = True  # with eps fixed, the LR range test is run again: the rate's own finding must go too
    metric = "median log10 update-to-data ratio"
    metric_goal = -3.0

    def check(self, ev, t):
        o = ev.optimizer
        if not o:
            return
        yield from self._eps(ev, o, t)
        yield from self._momentum(o, t)
        yield from self._decay(o, t)

    def _eps(self, ev, o, t):
        moments = {n: m for n, m in o.get("second_moment", {}).items()
                   if n in {p.name for p in ev.matrices()}}
        if not moments:
            return
        total = sum(m["numel"] for m in moments.values())
        share = sum(m["eps_share"] * m["numel"] for m in moments.values()) / max(total, 1)
        level, _ = update_level(ev)
        if share < t.eps_share or not np.isfinite(level) or level >= t.eps_update:
            return
        eps = max(g.get("eps", 0) for g in o["groups"])
        root = float(np.median([m["rms_root"] for m in moments.values()]))
        shrink = (eps + root) / max(root, 1e-30)
        # Where the steps would be too small even without eps, the rate is too low as well, and by more than eps
        # explains: a large eps chosen on purpose (RMSprop's 0.0316 in the MobileNetV3 recipe) at a rate a
        # thousand times too low is the rate's problem, and the rate's rules lead (auditor/causes.py).
        without = level + float(np.log10(shrink))
        explains = without >= t.eps_update
        times = f"{shrink:,.0f}" if shrink >= 10 else fmt(shrink, 2)  # "363", not fmt's "3.6e+02"
        what = (f"√v̂, the root of {o['class']}'s running squared gradient, is a median {fmt(root)} across the "
                f"weight tensors, below eps={fmt(eps)} for {pct(share)} of their elements: each step is "
                f"lr·m̂/(√v̂+eps) ≈ lr·m̂/eps, about {times}x smaller than {o['class']} intends, and the "
                f"weights move by 10^{fmt(level, 2)} of their scale a step.")
        if explains:
            title = f"{o['class']}'s eps={fmt(eps)} outweighs the gradient's scale"
            what += " This is a setting, not the learning rate: raising the rate would only paper over it."
        else:
            title = f"{o['class']}'s eps={fmt(eps)} shrinks each step, and the rate more"
            what += (f" Without eps they would still move only 10^{fmt(without, 2)} of their scale, too little to "
                     "learn: the learning rate is too low as well, by more than eps accounts for.")
        yield self.finding(
            "error" if explains else "warning", title, what,
            f"Use the default eps (or 1e-6 at most under fp16):\n\n"
            f"optimizer = torch.optim.{o['class']}(model.parameters(), lr=..., eps={ADAM_EPS:g})"
            + ("" if explains else "\n\nand raise the learning rate (see lr-range and update-ratio)"),
            [], advice="eps", eps=eps, rms_root=root, eps_share=share, update_log10=level, setting="eps",
            update_log10_without_eps=without, explains_rate=explains)

    def _momentum(self, o, t):
        for g in o["groups"]:
            m = g.get("momentum") or (g["betas"][0] if isinstance(g.get("betas"), list | tuple) else None)
            if m is None or m < t.momentum:
                continue
            name = "momentum" if "momentum" in g and g.get("momentum") else "beta1"
            yield self.finding(
                "warning", f"{name}={fmt(m, 4)}: each step follows gradients ~{fmt(1 / max(1 - m, 1e-12), 3)} "
                "steps old",
                f"{o['class']} with {name}={fmt(m, 4)} averages the last ~{fmt(1 / max(1 - m, 1e-12), 3)} "
                "gradients, so "
                "the update keeps going where the loss was long after it turned, and overshoots.",
                "Use the usual value:\n\n"
                + ("optimizer = torch.optim.SGD(model.parameters(), lr=..., momentum=0.9)" if name == "momentum"
                   else f"optimizer = torch.optim.{o['class']}(model.parameters(), lr=..., betas=(0.9, 0.999))"),
                [], setting=name, value=m)
            return

    def _decay(self, o, t):
        for g in o["groups"]:
            lr, wd = g.get("lr"), g.get("weight_decay")
            if not isinstance(lr, int | float) or not isinstance(wd, int | float) or lr * wd < t.decay_per_step:
                continue
            shrink = lr * wd
            half = np.log(2) / -np.log1p(-min(shrink, 0.999))
            yield self.finding(
                "warning", "Weight decay removes the weights faster than they learn",
                f"lr {fmt(lr)} x weight_decay {fmt(wd)} removes {pct(shrink)} of every weight each step: they "
                f"halve every {fmt(half, 2)} steps whatever the data says.",
                f"Lower weight_decay so that lr x weight_decay is ~1e-4 (0.05 with AdamW at 1e-3, 1e-4 with SGD "
                f"at 0.1):\n\noptimizer = torch.optim.{o['class']}(model.parameters(), lr={fmt(lr)}, "
                f"weight_decay={fmt(1e-4 / lr)})", [], setting="weight_decay", value=wd, shrink_per_step=shrink)
            return

    def plan_fix(self, ev, finding):
        setting = finding.evidence.get("setting")
        if setting == "eps":
            return FixPlan(f"eps = {ADAM_EPS:g}", optimizer_settings={"eps": ADAM_EPS})
        return None

    def measure(self, ev, finding):
        level, _ = update_level(ev)
        return level if np.isfinite(level) else None

    def draw(self, ax, ev, finding):
        figures.update_ratio(ax, ev)


RULE = OptimizerConfig()
