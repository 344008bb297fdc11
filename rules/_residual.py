"""Residual blocks that start at full scale: the norm that ends each block's branch has its gain at 1, so every
block adds a unit-variance branch to the sum from the first step. Read by the loss rules, whose fix it proposes.

Goyal et al. 2017 (sec. 5.1) start that gain at zero so each block begins as the identity; torchvision offers
it (`zero_init_residual=True`, off by default), timm does it by default (`zero_init_last`). Measured on the zoo's
probe (torchvision ResNet-152, SGD 0.00625 = 0.1 per 256 with momentum 0.9, batch 16, 100 steps, seeds 0-5,
bench/residual_init.py): with the default gains the loss spikes to 26-41 and ends above ln 10 at every seed
(medians of the last fifth 2.7-8.0); with the gains at zero it ends at 0.000-0.002 at every seed.
"""

from __future__ import annotations

NORMS = ("BatchNorm", "GroupNorm")


def branch_ends(ev) -> list[str]:
    """The norms that end a repeated block's branch, gain non-zero at step 0. A block's last norm (in call order)
    whose output no layer takes (it goes to an addition: `out += identity`), in at least two blocks that name
    it alike (layer1.0.bn3, layer1.1.bn3): a net's one final norm, or a plain conv-norm-ReLU stack, is left out."""
    s = ev.structure
    if not s:
        return []
    fed = {producer for producer, _ in s.edges}
    per_block: dict[str, list[str]] = {}
    for c in s.calls:
        if any(k in c.type for k in NORMS) and c.training:
            names = per_block.setdefault(c.name.rpartition(".")[0], [])
            if c.name not in names:
                names.append(c.name)
    gain_at_init = {p.name: float(p.data_rms[0]) for p in ev.params if p.data_rms.size}
    ends = [names[-1] for block, names in per_block.items() if block and len(names) >= 2
            and names[-1] not in fed and gain_at_init.get(f"{names[-1]}.weight", 0.0) > 0]
    # Blocks named alike: the attribute (bn3) and the parent's container (layer1) shared by two or more.
    shape = [(e.rpartition(".")[0].rpartition(".")[0], e.rpartition(".")[2]) for e in ends]
    return [e for e, k in zip(ends, shape, strict=True) if shape.count(k) >= 2]


def attributes(ends: list[str]) -> list[str]:
    return sorted({e.rpartition(".")[2] for e in ends})
