import numpy as np

from auditor.engine import Rule
from auditor.report import figures

_NORMS = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LazyBatchNorm1d", "LazyBatchNorm2d",
          "LazyBatchNorm3d")
_WEIGHTED = ("Linear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
             "LazyLinear", "LazyConv1d", "LazyConv2d", "LazyConv3d")


class BiasBeforeNorm(Rule):
    id = "bias-before-norm"
    from_start = True
    summary = "A layer with a bias feeds straight into BatchNorm, which subtracts it again: a wasted parameter."
    why = """
BatchNorm subtracts the per-channel batch mean, so a constant added just before it, the previous layer's
bias, cancels exactly: its gradient is zero and it never learns. It costs memory and an optimizer update and
signals a model assembled without knowing this; BatchNorm's own beta is the bias. This is why torchvision's
ResNets build their convolutions with bias=False.
"""
    example = """
nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU())
"""
    use_instead = """
nn.Sequential(nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
"""
    references = ("S. Ioffe, C. Szegedy, 'Batch Normalization', ICML 2015, section 3.2: 'the bias b can be "
                  "ignored since its effect will be canceled by the subsequent mean subtraction'",)

    def check(self, ev, t):
        if not ev.structure:
            return
        calls = {c.name: c for c in ev.structure.calls}
        pairs = [(a, b) for a, b in ev.structure.edges
                 if calls[a].type in _WEIGHTED and calls[a].has_bias and calls[b].type in _NORMS]
        if not pairs:
            return
        listing = ", ".join(f"{a} -> {b}" for a, b in pairs[:4]) + (" ..." if len(pairs) > 4 else "")
        grads = {p.name: p for p in ev.params}
        biases = [f"{a}.bias" for a, _ in pairs if f"{a}.bias" in grads]
        yield self.finding(
            "info", "Bias cancelled by the BatchNorm that follows",
            f"{len(pairs)} layer(s) with a bias feed straight into BatchNorm ({listing}); the normalisation "
            "subtracts the batch mean, so those biases have zero gradient and never learn.",
            "Drop the bias; BatchNorm's beta plays its role:\n\nnn.Conv2d(c_in, c_out, 3, padding=1, bias=False)",
            [a for a, _ in pairs], pairs=[list(p) for p in pairs], biases=biases)

    def draw(self, ax, ev, finding):
        params = {p.name: p for p in ev.params}
        rows = [(n, params[n].grad_norm) for n in finding.evidence["biases"] if n in params]
        figures.bars(ax, [n for n, _ in rows], [max(float(np.nanmedian(g)), 1e-12) for _, g in rows],
                     "median gradient norm of the bias", log=True)


RULE = BiasBeforeNorm()
