import numpy as np

from auditor.engine import FixPlan, Rule, Threshold
from auditor.evidence import body_activations, fmt
from auditor.report import figures

INIT_FOR = {"relu": "Kaiming (He) normal, gain sqrt(2): nn.init.kaiming_normal_(w, nonlinearity='relu')",
            "leaky_relu": "Kaiming (He) normal with the slope: nn.init.kaiming_normal_(w, a=0.01, "
                          "nonlinearity='leaky_relu')",
            "smooth": "Kaiming for GELU/SiLU, or the transformer convention normal(0, 0.02) with residual "
                      "projections scaled by 1/sqrt(2 * n_layers)",
            "tanh": "Xavier (Glorot) with gain 5/3: nn.init.xavier_normal_(w, gain=5/3)",
            "sigmoid": "Xavier (Glorot): nn.init.xavier_normal_(w)"}


class InitScale(Rule):
    id = "init-scale"
    from_start = True
    summary = "At initialisation the activations' std grows or shrinks layer after layer."
    thresholds = {
        "factor": Threshold(10.0, "warn when the std at the last activation layer differs from the first by this "
                            "factor", "measured: 1.0-2.6x on the healthy samples; Glorot & Bengio 2010 show "
                            "decaying std across 5 tanh layers with a bad init"),
        "min_layers": Threshold(3, "activation layers of one kind needed", "a trend needs a few layers"),
        "zero_share": Threshold(0.5, "error when at least this share of the weight matrices (and two or more) are "
                                "exactly zero at initialisation", "deliberate zero inits stay well below it: a "
                                "zero-initialised head is one matrix, LoRA's B one in three, DiT's adaLN-Zero about "
                                "one in five; on the healthy zoo at most 8 of 59 (timm's NF-ResNet gains, "
                                "bench/zoo.py)"),
    }
    why = """
Each layer multiplies the activations' scale by roughly gain * std(w) * sqrt(fan_in). When that is not 1,
the scale grows or shrinks geometrically with depth: deep layers see signals near zero (and pass back
vanishing gradients) or huge ones (saturating or exploding). The initialisation that keeps it near 1
depends on the activation: Kaiming for the ReLU family, Xavier/Glorot for tanh and sigmoid.
"""
    example = """
for layer in model.layers:
    nn.init.normal_(layer.weight, std=0.01)        # shrinks the signal ~10x per layer at fan-in 256
"""
    use_instead = """
for layer in model.layers:
    nn.init.kaiming_normal_(layer.weight, nonlinearity='relu')
"""
    references = ("X. Glorot, Y. Bengio, 'Understanding the difficulty of training deep feedforward neural "
                  "networks', AISTATS 2010", "K. He et al., 'Delving Deep into Rectifiers', ICCV 2015")

    def check(self, ev, t):
        zero = _zero_weights(ev, t)
        if zero:
            yield zero
            return
        by_kind = {}
        for a in body_activations(ev):
            if a.std.size and np.isfinite(a.std[0]):
                by_kind.setdefault(a.kind, []).append(a)
        for kind, acts in by_kind.items():
            if len(acts) < t.min_layers:
                continue
            first, last = float(acts[0].std[0]), float(acts[-1].std[0])
            if first <= 0 or last <= 0:
                ratio = 0.0 if last <= 0 else float("inf")
            else:
                ratio = last / first
            if 1 / t.factor <= ratio <= t.factor:
                continue
            direction = "shrinks" if ratio < 1 else "grows"
            profile = {a.name: float(a.std[0]) for a in acts}
            call = INIT_FOR.get(kind, "nn.init.kaiming_normal_(w)").split(": ")[-1].replace("(w", "(m.weight")
            yield self.finding(
                "warning", f"Activation scale {direction} with depth at initialisation",
                f"On the first batch the std of the {kind} outputs goes from {fmt(first)} at {acts[0].name} to "
                f"{fmt(last)} at {acts[-1].name} across {len(acts)} layers (x{fmt(ratio)}): the initialisation "
                f"does not preserve the signal's scale.",
                f"Initialise the weights feeding {kind} with {INIT_FOR.get(kind, 'fan-in scaling')}:\n\n"
                "for m in model.modules():\n    if isinstance(m, (nn.Linear, nn.Conv2d)):\n"
                f"        {call}",
                [acts[0].name, acts[-1].name], kind=kind, ratio=ratio, profile=profile)

    def draw_fixed(self, ax, ev, after, finding):
        if finding.evidence.get("zero"):
            return False
        kind = finding.evidence["kind"]
        rows = [(a.name, float(a.std[0])) for a in body_activations(ev) if a.kind == kind and a.std.size]
        fixed = {a.name: float(a.std[0]) for a in after.activations if a.kind == kind and a.std.size}
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [max(v, 1e-12) for _, v in rows], 0.4, color="C3", label="as is")
        ax.bar(x + 0.2, [max(fixed.get(n, np.nan), 1e-12) for n, _ in rows], 0.4, color="C2", label="with the fix")
        ax.set_yscale("log")
        ax.set_xticks(x, [n for n, _ in rows], rotation=45, ha="right", fontsize=6.5)
        ax.set_title(f"{kind} output std at init, per layer", fontsize=7.5)
        ax.legend(fontsize=7)
        return True

    def draw(self, ax, ev, finding):
        if finding.evidence.get("zero"):
            mats = [p for p in _matrices(ev) if p.data_rms.size]
            rms = [float(p.data_rms[0]) for p in mats]
            floor = min((v for v in rms if v > 0), default=1.0) / 10  # a log axis has no 0: zeros drawn short
            figures.bars(ax, [p.name for p in mats], [v if v > 0 else floor for v in rms],
                         "RMS at init", log=True, highlight=finding.evidence["zero"])
            ax.set_title("each weight matrix; red: exactly zero (drawn short: a log axis has no 0)", fontsize=7.5)
            return
        profile = finding.evidence["profile"]
        figures.bars(ax, list(profile), list(np.maximum(list(profile.values()), 1e-12)),
                     "activation std on the first batch", log=True)

    metric = "std ratio, last activation layer over first, at init"

    def metric_of(self, finding):
        return "weight matrices exactly zero at init" if finding.evidence.get("zero") else self.metric

    def plan_fix(self, ev, finding):
        from auditor.fixes import reinit_for  # `audit rules` runs without torch
        if finding.evidence.get("zero"):
            shapes = {p.name: p.shape for p in ev.params}
            return FixPlan("the zero weight matrices drawn from normal(0, 1/sqrt(fan-in))",
                           param_edits=tuple((n, "normal", float(np.prod(shapes[n][1:])) ** -0.5)
                                             for n in finding.evidence["zero"]))
        kind = finding.evidence["kind"]
        return FixPlan(("Xavier/Glorot" if kind in ("tanh", "sigmoid") else "Kaiming") + " initialisation of "
                       "every Linear/Conv layer, zero biases", model_edit=lambda m: reinit_for(m, kind))

    def measure(self, ev, finding):
        if finding.evidence.get("zero"):
            return float(sum(p.data_rms.size > 0 and p.data_rms[0] == 0 for p in _matrices(ev)))
        acts = [a for a in body_activations(ev) if a.kind == finding.evidence["kind"] and a.std.size]
        if len(acts) < 2 or not acts[0].std[0] > 0:
            return None
        return float(acts[-1].std[0] / acts[0].std[0])


LAYER_TYPES = {"Linear", "Bilinear", "Conv1d", "Conv2d", "Conv3d", "Embedding", "EmbeddingBag", "Conv1D"}


def _matrices(ev) -> list:
    """Every weight matrix, conv kernel and embedding table, zero or not (Evidence.matrices leaves zeros out)."""
    return [p for p in ev.params if p.role in ("weight", "embedding") and len(p.shape) >= 2]


def _zero_weights(ev, t):
    """Weight matrices that start at exactly zero. Every unit of such a layer computes the same thing and gets the
    same gradient, and a zero layer passes no signal forward and, for the layers before it, no gradient back."""
    matrices = _matrices(ev)
    zero = [p.name for p in matrices if p.data_rms.size and p.data_rms[0] == 0]
    # The first layer the input meets, zero: the input is multiplied by zero, whatever the rest. A layer, not a
    # tensor its container owns (torchvision's ViT starts its zero class token ahead of the patch embedding).
    layers = [p for p in matrices if p.module_type in LAYER_TYPES] or matrices
    first = min(layers, key=lambda p: p.order, default=None)
    if len(zero) < max(2, t.zero_share * len(matrices)) and not (first is not None and first.name in zero):
        return None
    shown = ", ".join(zero[:4]) + (f" and {len(zero) - 4} more" if len(zero) > 4 else "")
    entry = f"The first layer the input meets, {first.name}, is one of them. " if first.name in zero else ""
    return RULE.finding(
        "error", "Weights initialised to zero",
        f"{len(zero)} of the {len(matrices)} weight matrices are exactly zero at initialisation ({shown}). {entry}"
        "The units of a zero layer all compute the same output and receive the same gradient, so they stay "
        "identical (the symmetry is never broken), and a zero layer passes no signal to the layers after it and no "
        "gradient to the layers before it: the model starts blind to its input.",
        "Draw the weights at random: PyTorch's own initialisation, instead of the zeros:\n\n"
        "for m in model.modules():\n    if isinstance(m, (nn.Linear, nn.Conv2d, nn.Embedding)):\n"
        "        m.reset_parameters()",
        zero[:1] + zero[-1:] if len(zero) > 1 else zero, onset=0, zero=zero, matrices=len(matrices))


RULE = InitScale()
