"""Under torchrun: the replay runs on every rank, with the model wrapped as the user's job wraps it.

PyTorch's own stack does the work (torch.distributed, DistributedDataParallel, FSDP2's `fully_shard`): the
auditor starts no processes of its own. What crosses ranks are the probe's small statistics, reduced in one
collective at read-back, and a few per-rank vectors for the checks only a distributed run can make (batch
fingerprints, per-tensor norms of parameters and buffers): never parameters or activations themselves.
Rank 0 alone runs the experiments and fix verification (on an unwrapped copy, as a one-device job would),
writes the reports, and tells every rank the exit code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
from torch import nn

from .config import STRATEGIES  # noqa: E402,F401  (the command line offers them without importing torch)
from .errors import AuditError, from_user_exception

# Long enough for rank 0's experiments, fix verification and PDF while the others wait for the exit code.
TIMEOUT = timedelta(minutes=30)


@dataclass
class Dist:
    rank: int
    world: int
    strategy: str  # ddp | fsdp | wrap() (model.py's own)
    backend: str
    device: torch.device
    mesh: object  # torch.distributed.device_mesh.DeviceMesh

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """Parameters are split across ranks (their norms add in squares), not replicated."""
        return self.strategy == "fsdp"


def from_env() -> Dist | None:
    """The process group torchrun asked for (WORLD_SIZE > 1), or None for a one-process audit."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device, backend = torch.device("cuda", local_rank % torch.cuda.device_count()), "nccl"
        torch.cuda.set_device(device)
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=TIMEOUT)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    return Dist(dist.get_rank(), dist.get_world_size(), "ddp", backend, device, mesh)


def choose(d: Dist, strategy: str | None, user_wrap) -> None:
    """--strategy when given, else model.py's wrap(model, mesh) when it defines one, else DDP."""
    d.strategy = strategy or ("wrap()" if user_wrap is not None else "ddp")


def wrap(model: nn.Module, d: Dist, user_wrap=None, model_file: str = "model.py") -> tuple[nn.Module, nn.Module]:
    """(what the probe calls, what it inspects): the wrapper runs forward and backward, while hooks, parameter
    names and the structure are read from the user's own module inside it."""
    if d.strategy == "wrap()":
        try:
            wrapped = user_wrap(model, d.mesh)
        except Exception as exc:
            raise from_user_exception(exc, f"calling wrap(model, mesh) from {model_file}") from None
        if not isinstance(wrapped, nn.Module):
            raise AuditError(f"{model_file}: wrap(model, mesh) returned {type(wrapped).__name__}, not an nn.Module")
    elif d.strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    else:
        if d.device.type == "cpu" and torch_version() < (2, 7):
            # FSDP2 waits on stream events, which CPU streams gained in torch 2.7 (pytorch/pytorch#145935).
            raise AuditError(f"--strategy fsdp on the CPU needs torch 2.7 or newer (this is {torch.__version__}); "
                             "use --strategy ddp here, or run on GPUs")
        from torch.distributed.fsdp import fully_shard

        wrapped = fully_shard(model, mesh=d.mesh)
    inner = wrapped.module if isinstance(wrapped, torch.nn.parallel.DistributedDataParallel) else wrapped
    return wrapped, inner


def torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return int(major), int(minor)


def local(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's shard on this rank (FSDP2), else the tensor."""
    return t.to_local() if hasattr(t, "to_local") else t


def reduce_flat(d: Dist, flat: torch.Tensor, squares: torch.Tensor | None) -> torch.Tensor:
    """Every rank's read-back vector, reduced in one collective: norms of sharded tensors combine as the
    root of their summed squares (`squares` marks them), everything else is averaged over ranks."""
    import torch.distributed as dist

    sizes = [torch.zeros(1, dtype=torch.long, device=flat.device) for _ in range(d.world)]
    dist.all_gather(sizes, torch.tensor([flat.numel()], device=flat.device))
    if len({int(s) for s in sizes}) != 1:
        raise AuditError("the ranks recorded different statistics (a model whose layers or batch shapes differ "
                         f"across ranks: {[int(s) for s in sizes]} values); audit it on one process")
    value = flat.clone()
    if squares is not None:
        value = torch.where(squares, value * value, value)
    dist.all_reduce(value)
    if squares is None:
        return value / d.world
    return torch.where(squares, value.sqrt(), value / d.world)


def gather(d: Dist, values: torch.Tensor) -> np.ndarray:
    """The same small vector from every rank, stacked (rank-major) on the host."""
    import torch.distributed as dist

    values = values.detach().float().reshape(-1)
    out = [torch.empty_like(values) for _ in range(d.world)]
    dist.all_gather(out, values)
    return torch.stack(out).cpu().numpy()


def reducer(d: Dist):
    """How the ranks' read-back vectors combine (DeviceLog.read_back): sharded parameter norms in squares, the
    rest averaged."""

    def reduce(flat: torch.Tensor, blocks: list[tuple[str, int]]) -> torch.Tensor:
        squares = None
        if d.sharded:
            marks = torch.tensor([k.startswith("param/") for k, _ in blocks], device=flat.device)
            squares = marks.repeat_interleave(torch.tensor([n for _, n in blocks], device=flat.device))
        return reduce_flat(d, flat, squares)

    return reduce


def per_rank(d: Dist, model: nn.Module, log, fingerprint_steps: int) -> dict:
    """What only a distributed run can show, kept per rank: the early batches' fingerprints, the norm of every
    parameter and buffer at the end (replicated copies must agree), and each step's total gradient norm."""
    fps = log.values("batch_fp")[:fingerprint_steps]
    fp = torch.stack([v.float() for v in fps]) if fps and all(v.shape == fps[0].shape for v in fps) else None
    named = [(n, local(p)) for n, p in model.named_parameters()] if not d.sharded else []
    buffers = [(n, b) for n, b in model.named_buffers() if b.is_floating_point() and b.numel()]
    tensors = [t.detach().float() for _, t in named + buffers]
    norms = torch.stack(torch._foreach_norm(tensors, 2)) if tensors else torch.zeros(0, device=d.device)
    steps = log.values("param/grad_norm")
    grad = torch.stack([torch.stack(v).nan_to_num().square().sum().sqrt() for v in steps]) if steps else None
    out = {"world": d.world, "strategy": d.strategy, "backend": d.backend,
           "param_names": [n for n, _ in named], "buffer_names": [n for n, _ in buffers],
           "norms": gather(d, norms.to(d.device))}
    if agree(d, fp is not None):  # a collective: every rank must take the same branch
        out["fingerprints"] = gather(d, fp.to(d.device)).reshape(d.world, *fp.shape)
    # Under FSDP2 each rank's gradient shard differs by design: only replicated gradients must agree.
    if agree(d, grad is not None) and not d.sharded:
        out["grad_norm"] = gather(d, grad.to(d.device))
    return out


def agree(d: Dist | None, flag: bool) -> bool:
    """True on every rank when it holds on every rank: ranks leave the replay loop together or not at all."""
    if d is None:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0)


def stop_code(d: Dist, code: int) -> int:
    """The highest stop code any rank holds (0: none was signalled), on every rank."""
    import torch.distributed as dist

    t = torch.tensor([float(code)], device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def broadcast_code(d: Dist, code: int | None) -> int:
    """Rank 0's exit code, on every rank."""
    import torch.distributed as dist

    box = [code]
    dist.broadcast_object_list(box, src=0)
    return int(box[0])


def shutdown(code: int = 0, together: bool = True) -> None:
    """End every rank with the same code. torchrun stops the ranks still running as soon as one exits non-zero
    (they would report SIGTERM, not the verdict), so ranks that finished together meet at a barrier and leave at
    once, without the interpreter's slow and uneven teardown; the reports are written and the streams flushed.
    A rank that failed on its own (`together` False) leaves at once: the others may be waiting in a collective
    it will never join, and torchrun stops them when it exits."""
    import sys

    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if together:
            dist.barrier()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
