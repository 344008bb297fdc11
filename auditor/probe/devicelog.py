"""Statistics stay on the device while the probe runs and come back to the host in one transfer."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch


class DeviceLog:
    """Append-only store of small device tensors, keyed by name, read back in bulk at the end.

    Nothing here calls `.item()` or `.cpu()` while recording: the hooks that feed it never wait for the
    device, so the probe runs at the pace of plain training.
    """

    def __init__(self) -> None:
        self._values: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._steps: dict[str, list[int]] = defaultdict(list)

    def put(self, key: str, value: torch.Tensor | list[torch.Tensor], step: int) -> None:
        """`value` is a tensor, or a list of 0-d tensors that read-back stacks into a vector."""
        self._values[key].append(value if isinstance(value, list) else value.detach())
        self._steps[key].append(step)

    def keys(self):
        return self._values.keys()

    def values(self, key: str) -> list:
        return self._values.get(key, [])

    def read_back(self, reduce: Callable | None = None) -> dict[str, tuple[list[int], list[np.ndarray]]]:
        """Return `{key: (steps, [array per entry])}` after a single device-to-host copy. `reduce(flat, blocks)`,
        under torchrun, combines the ranks' flat vectors (`blocks`: (key, length) in order) before the copy."""
        keys = [k for k in self._values if self._values[k]]
        if not keys:
            return {}
        first_value = self._values[keys[0]][0]
        device = (first_value[0] if isinstance(first_value, list) else first_value).device
        # One block per key where the entries agree in shape and dtype (per-step scalars and vectors, the
        # bulk of the log), else one per entry: a few hundred tiny reshape/convert calls become a handful.
        blocks = []  # (key, tensor, shape of one entry, entries in the block or None for a single entry)
        for key in keys:
            values = self._values[key]
            if isinstance(values[0], list):
                # Every step's list of scalars in one stack: one op for the whole probe, not one a step.
                width = len(values[0])
                flat = torch.stack([t for v in values for t in v]).float()  # 0-d norms, no grad
                blocks.append((key, flat.reshape(len(values), width), torch.Size([width]), len(values)))
                continue
            first = values[0]
            if all(v.shape == first.shape and v.dtype == first.dtype for v in values):
                blocks.append((key, torch.stack(values), first.shape, len(values)))
            else:
                blocks.extend((key, t, t.shape, None) for t in values)
        host = torch.cat([t.reshape(-1).to(device=device, dtype=torch.float32) for _, t, _, _ in blocks])
        if reduce is not None:
            host = reduce(host, [(key, t.numel()) for key, t, _, _ in blocks])
        host = host.cpu().numpy()
        out = {key: (list(self._steps[key]), []) for key in keys}
        offset = 0
        for key, t, shape, count in blocks:
            chunk = host[offset:offset + t.numel()]
            offset += t.numel()
            if count is None:
                out[key][1].append(chunk.reshape(tuple(shape)))
            else:
                out[key][1].extend(chunk.reshape((count, *shape)))
        return out


def stacked(series: tuple[list[int], list[np.ndarray]] | None, steps: int, width: int | None = None) -> np.ndarray:
    """Lay a recorded series out as an array indexed by step; steps with no record are NaN."""
    if width is None:
        width = series[1][0].size if series and series[1] else 1
    table = np.full((steps, width), np.nan, dtype=np.float64)
    if series:
        for step, value in zip(*series, strict=True):
            if step < steps:
                table[step] = value.reshape(-1)
    return table
