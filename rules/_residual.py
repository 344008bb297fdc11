"""Residual blocks that start at full scale: the norm that ends each block's branch has its gain at 1, so every
block adds a unit-variance branch to the sum from the first step. Read by loss-plateau, whose rise it explains.

Goyal et al. 2017 (sec. 5.1) start that gain at zero so each block begins as the identity; torchvision offers
it (`zero_init_residual=True`, off by default), timm does it by default (`zero_init_last`). Measured on the zoo's
probe (torchvision ResNet-152, SGD 0.00625 = 0.1 per 256 with momentum 0.9, batch 16, 100 steps, seeds 0-5,
bench/residual_init.py): with the default gains the loss spikes to 26-41 and ends above ln 10 at every seed
(medians of the last fifth 2.7-8.0); with the gains at zero it ends at 0.000-0.002 at every seed.
"""

from __future__ import annotations

import re

NORMS = ("BatchNorm", "GroupNorm")


def branch_ends(ev) -> list[str]:
    """The norms that end a repeated block's branch, gain non-zero at step 0: a norm whose output is added to
    another tensor (`out += identity`) and that ends its block's chain of norms, written either way:
    - as attributes of the block (torchvision's and most hand-written ResNets: bn1, bn2, bn3 beside a
      `downsample` holding the shortcut's norm): the last of two or more;
    - as the last of two or more conv-norm units (RegNet's f.a, f.b, f.c, each with its norm inside), where the
      block holds no norm of its own.
    Found in two or more blocks named alike (layer1.0.bn3, layer1.1.bn3); a shortcut's norm (alone in its
    `downsample`) is not a branch's end."""
    s = ev.structure
    if not s:
        return []
    partners: dict[str, list[tuple[int, str, int]]] = {}  # norm -> (its call, the other operand, its call)
    for (a, i), (b, j) in s.added:
        partners.setdefault(a, []).append((i, b, j))
        partners.setdefault(b, []).append((j, a, i))
    norms: list[str] = []
    for c in s.calls:
        if any(k in c.type for k in NORMS) and c.training and c.name not in norms:
            norms.append(c.name)
    gain_at_init = {p.name: float(p.data_rms[0]) for p in ev.params if p.data_rms.size}
    ends = [n for n in norms if gain_at_init.get(f"{n}.weight", 0.0) > 0 and (block := _block(n, norms))
            # Added to what came before it (`x + f(x)`), or to its own block's shortcut: not the identity that a
            # later block adds its branch to (EfficientNet's block output, a norm, is the next block's shortcut).
            and any(j < i or (other and other.startswith(block + ".")) for i, other, j in partners.get(n, ()))]
    shape = [re.sub(r"\d+", "#", e) for e in ends]
    return [e for e, k in zip(ends, shape, strict=True) if shape.count(k) >= 2]


def _parent(name: str) -> str:
    return name.rpartition(".")[0]


def _block(norm: str, norms: list[str]) -> str | None:
    """The block whose chain of norms `norm` ends, or None."""
    block = _parent(norm)
    if not block:
        return None
    own = [n for n in norms if _parent(n) == block]
    if len(own) >= 2:
        return block if own[-1] == norm else None
    # One norm inside a unit (f.c.1 in f.c): the block is the unit's parent, made of such units only.
    unit, block = block, _parent(block)
    if not block or any(_parent(n) == block for n in norms):
        return None
    units = list(dict.fromkeys(_parent(n) for n in norms if _parent(_parent(n)) == block))
    inside = [n for n in norms if n.startswith(unit + ".")]
    return block if len(units) >= 2 and units[-1] == unit and inside == [norm] else None


def suffixes(ends: list[str]) -> list[str]:
    """What the ends' names end with, to find them in a fix's code: `bn3`, or `c.1` for a unit's norm."""
    return sorted({".".join(e.split(".")[-2 if e.rpartition(".")[2].isdigit() else -1:]) for e in ends})
