import numpy as np

from auditor.engine import Rule, Threshold
from auditor.evidence import depth_profile, fmt, is_adaptive, nanmedian, profile_ends, scale_free
from auditor.report import figures


class ExplodingGradients(Rule):
    id = "exploding-gradients"
    summary = "Gradients grow layer after layer on their way back, are huge against the weights, or are NaN/inf."
    thresholds = {
        "decades": Threshold(2.0, "warn when the gradient at the first layer is this many decades above the "
                             "last layer's", "measured: healthy samples stay within 0.5 decade"),
        "step_data": Threshold(1.0, "warn when one plain-SGD step at the user's own rate, lr x ‖grad‖/‖weight‖, "
                               "stays above this (the step is as large as the weights)",
                               "measured: healthy SGD samples stay below 0.3 (lr 0.1 x a ratio under 3); a rate "
                               "that rewrites a layer each step is the definition of an explosion"),
        "min_layers": Threshold(3, "layers needed before a depth profile is judged", "a profile needs a slope"),
        "burst": Threshold(100.0, "an explosion: a step whose global gradient norm is this many times the median "
                           "of the steps before it", "measured: healthy samples stay under 6x the running median "
                           "(grad-spikes' calibration); an explosion is orders of magnitude"),
        "burst_loss": Threshold(10.0, "... and the loss within the next 5 steps reaches this many times its start",
                                "an explosion moves the loss by orders of magnitude; batch noise by percent"),
    }
    why = """
When each layer's Jacobian has gain above one, the gradient grows geometrically towards the input: the
first layers take huge steps, the loss jumps or turns to NaN. Gradients many times larger than the
weights themselves mean a single SGD step rewrites the layer. NaN or inf gradients corrupt every weight
they touch at the next optimizer step.
"""
    example = """
for layer in layers:                 # 12 linear layers, each with gain 2: 2^12 = 4096x growth
    nn.init.normal_(layer.weight, std=2 / layer.in_features**0.5)
"""
    use_instead = """
nn.init.kaiming_normal_(layer.weight, nonlinearity='relu')      # gain matched to the activation
torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0) # and clip while you fix the cause
"""
    known_problems = """
Recurrent networks unrolled over long sequences show growth along time rather than depth; the profile
here is over layers only.
"""
    references = ("Pascanu, Mikolov & Bengio, 'On the difficulty of training recurrent neural networks', ICML 2013",
                  "Glorot & Bengio, AISTATS 2010", "He et al., ICCV 2015")

    def check(self, ev, t):
        yield from self._nonfinite(ev)
        yield from self._burst(ev, t)
        names, scale, source = depth_profile(ev)
        ok = np.isfinite(scale) & (scale > 0)
        if ok.sum() >= t.min_layers:
            n2 = [n for n, k in zip(names, ok, strict=True) if k]
            s2 = scale[ok]
            near_input, near_output = profile_ends(s2, source)
            decades = float(np.log10(near_input / near_output))
            if decades >= t.decades:
                yield self.finding(
                    "warning", "Gradients explode towards the input",
                    f"Measured on {source}: the gradient near the input ({n2[0]} ...) is {fmt(near_input)}, "
                    f"{fmt(decades, 2)} decades above the {fmt(near_output)} near the output (... {n2[-1]}), across "
                    f"{len(n2)} layers.",
                    "Match the initialisation gain to the activation (Kaiming for ReLU, Xavier for tanh) or add "
                    "normalisation; clip the gradient norm meanwhile:\n\n"
                    "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)",
                    [n2[0], n2[-1]], profile=dict(zip(n2, s2.tolist(), strict=True)), decades=decades,
                    source=source)
        yield from self._steps_rewrite_weights(ev, t)

    def _steps_rewrite_weights(self, ev, t):
        """Gradients far larger than the weights, read as the user's optimizer applies them. An adaptive
        optimizer (Adam, RMSprop, ...) divides the gradient's scale away: its step is about lr per element
        whatever ‖g‖ is, and update-ratio judges that step. Weights followed by a normalisation are
        scale-free: a step that grows them only lowers their effective rate. What is left is a plain or momentum
        SGD step, lr x ‖g‖, against the weight it updates."""
        lr = ev.probe.lr
        if is_adaptive(ev) or not lr or not np.isfinite(lr) or lr <= 0:
            return
        free = scale_free(ev)
        big = []
        for p in ev.matrices():
            ratio = nanmedian(p.grad_data_ratio[ev.window()])
            if p.name not in free and np.isfinite(ratio) and lr * ratio > t.step_data:
                big.append((ratio, p.name))
        if big:
            big.sort(reverse=True)
            listing = ", ".join(f"{n} ({fmt(r)})" for r, n in big)
            yield self.finding(
                "warning", "Gradients are far larger than the weights",
                f"‖grad‖/‖weight‖ is {listing}: one {ev.probe.optimizer.split('(')[0]} step at your learning rate "
                f"{fmt(lr)} changes those weights by {fmt(lr * big[0][0])}x their own scale (over "
                f"{fmt(t.step_data)} is a step that rewrites the layer).",
                "Find the layer or loss term with the huge scale (an unnormalised input, regression targets in "
                "raw units such as prices, a loss summed instead of averaged) and standardise it; clip meanwhile:"
                "\n\ntorch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)",
                [n for _, n in big], grad_data_ratio={n: r for r, n in big})

    def _burst(self, ev, t):
        """An explosion early in the probe is the cause of what follows (dead units, a plateau), even when
        the later half, which the other tests read, is quiet."""
        g, loss = ev.grad_norm, ev.loss
        if g.size < 2 or not np.isfinite(loss[0]) or loss[0] <= 0:
            return
        for s in range(1, g.size):
            base = nanmedian(g[:s])
            if not (np.isfinite(g[s]) and np.isfinite(base) and base > 0 and g[s] >= t.burst * base):
                continue
            after = loss[s: s + 6]
            peak = float(np.nanmax(np.where(np.isfinite(after), after, np.inf)))
            if peak < t.burst_loss * loss[0]:
                continue
            peak_text = "not finite" if not np.isfinite(peak) else fmt(peak)
            yield self.finding(
                "error", f"Gradients exploded at step {s}",
                f"At step {s} the global gradient norm jumped to {fmt(g[s])}, {fmt(g[s] / base)}x the "
                f"{fmt(base)} of the steps before, and the loss went from {fmt(loss[0])} at step 0 to {peak_text} "
                "within the next steps. One such step rewrites the weights; what the later steps show (dead or "
                "saturated units, a plateau, tiny updates) follows from it.",
                "Clip the global gradient norm and lower the learning rate (or warm it up); for recurrent nets "
                "initialise the recurrent weights orthogonally:\n\n"
                "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)\n"
                "scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=200)",
                [], onset=s, burst_step=s, burst_norm=float(g[s]), before_norm=base, loss_start=float(loss[0]),
                loss_peak=peak)
            return

    def _nonfinite(self, ev):
        # NaN gradients that follow a NaN loss are loss-nan's finding; here, those that come first. Under fp16 the
        # steps a GradScaler skipped are amp-overflow's.
        bad = []
        skipped = set((ev.amp or {}).get("skipped", ()))
        for p in ev.params:
            steps = [s for s in p.nonfinite_grad_steps if s < ev.loss.size and np.isfinite(ev.loss[s])
                     and s not in skipped]
            if steps:
                bad.append((int(steps[0]), p.name))
        if not bad:
            return
        bad.sort()
        step = bad[0][0]
        yield self.finding(
            "error", "NaN or inf gradients",
            f"The gradient of {bad[0][1]} is not finite at step {step} while the loss still is "
            f"({fmt(ev.loss[step])}); {len(bad)} parameter tensor(s) affected. The next optimizer step writes "
            "NaN into the weights.",
            "Look for an operation with an unbounded derivative (sqrt or log at 0, division by a small norm, "
            "pow with a fractional exponent) and add an epsilon; clip gradients:\n\n"
            "x = x / (x.norm(dim=-1, keepdim=True) + 1e-6)\n"
            "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)",
            [n for _, n in bad], onset=step, first_step=step)

    def draw(self, ax, ev, finding):
        if "profile" in finding.evidence:
            figures.depth_profile(ax, *depth_profile(ev), highlight=finding.layers)
        elif "grad_data_ratio" in finding.evidence:
            figures.grad_data_ratio(ax, ev, finding.layers)
        else:
            figures.grad_norm(ax, ev)


RULE = ExplodingGradients()
