"""Small helpers for running dataset-wide analyses under ``torch.distributed`` (torchrun).

Nothing here is a scheduler of its own: processes are started by ``torchrun`` (or
``torch.multiprocessing``), which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``; :func:`distributed_session` joins that process group (Gloo on
CPU, NCCL on GPU) and always leaves it again. The reductions are exact: shards are explicit
ranges of dataset indices, integer counts are summed, and top-k results are merged with the same
total order as single-process mining (see :mod:`deconv.mining.distributed`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from deconv.errors import InvalidArgumentError, InvalidTypeError

__all__ = ["DistributedContext", "all_gather_objects", "all_reduce_counts", "barrier",
           "current_context",
           "distributed_session", "env_world_size", "gather_objects", "shard_range"]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the job.

    Attributes:
        rank (int): global rank (0 for a single process).
        world_size (int): number of processes (1 for a single process).
        local_rank (int): rank on this machine (picks the GPU).
        backend (str | None): ``"gloo"``, ``"nccl"`` or ``None`` without a process group.
        device (torch.device): where this rank computes.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the rank that writes results)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when a process group with more than one process is in use."""
        return self.backend is not None and self.world_size > 1


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (set by torchrun), 1 when absent."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def shard_range(length: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous block ``[start, stop)`` of ``range(length)`` that ``rank`` processes.

    Blocks are as even as possible (sizes differ by at most one) and cover every index once;
    a rank gets an empty block when ``length < world_size``.

    Raises:
        ValueError: negative ``length`` or a rank outside ``[0, world_size)``.
    """
    if length < 0:
        raise InvalidArgumentError(f"length must be >= 0, got {length}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise InvalidArgumentError(
            f"rank must be in [0, world_size), got rank {rank} of {world_size}")
    return length * rank // world_size, length * (rank + 1) // world_size


def _resolve_device(device: str | torch.device | None, local_rank: int) -> torch.device:
    if device is None:
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def current_context(device: str | torch.device | None = None) -> DistributedContext:
    """The context of an already initialized process group, or the single-process one.

    Args:
        device (str | torch.device | None): ``"cuda"`` means ``cuda:LOCAL_RANK``.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_available() and dist.is_initialized():
        return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank,
                                  dist.get_backend(), _resolve_device(device, local_rank))
    return DistributedContext(device=_resolve_device(device, 0))


@contextlib.contextmanager
def distributed_session(device: str | torch.device | None = None, backend: str | None = None,
                        init_method: str | None = None, rank: int | None = None,
                        world_size: int | None = None) -> Iterator[DistributedContext]:
    """Join the process group for the block, and always leave it (``destroy_process_group``).

    Without ``world_size`` and with ``WORLD_SIZE`` unset or 1 this is a single-process context
    (no group is created). A group that already exists is used and left alone.

    Args:
        device (str | torch.device | None): ``"cuda"`` selects ``cuda:LOCAL_RANK`` (and makes it
            the current device, as NCCL needs); ``None`` or ``"cpu"`` computes on the CPU.
        backend (str | None): ``"nccl"`` for CUDA devices, ``"gloo"`` otherwise (default).
        init_method (str | None): e.g. ``"file:///tmp/pg"`` or ``"tcp://127.0.0.1:29500"``;
            default ``"env://"`` (what torchrun sets up).
        rank (int | None): this process's rank (default ``RANK``).
        world_size (int | None): number of processes (default ``WORLD_SIZE``).

    Yields:
        DistributedContext: rank, world size, device.

    Raises:
        ValueError: an unknown backend, or NCCL without a CUDA device.
    """
    world_size = env_world_size() if world_size is None else world_size
    rank = int(os.environ.get("RANK", "0")) if rank is None else rank
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank if world_size > 1 else 0)))
    run_device = _resolve_device(device, local_rank)
    if backend is None:
        backend = "nccl" if run_device.type == "cuda" else "gloo"
    if backend not in ("gloo", "nccl"):
        raise InvalidArgumentError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    if backend == "nccl" and run_device.type != "cuda":
        raise InvalidArgumentError(
            "the NCCL backend needs --device cuda; use backend='gloo' on the CPU")
    if run_device.type == "cuda":
        torch.cuda.set_device(run_device)
    created = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend, init_method=init_method or "env://", rank=rank,
                                world_size=world_size)
        created = True
    try:
        if dist.is_initialized():
            yield DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank,
                                     dist.get_backend(), run_device)
        else:
            yield DistributedContext(device=run_device)
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (nothing to wait for without a process group)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def gather_objects(obj, dst: int = 0) -> list | None:
    """Every rank's ``obj`` (picklable, small) on rank ``dst``, in rank order; None elsewhere.

    Without a process group this is ``[obj]``.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    gathered = [None] * dist.get_world_size() if dist.get_rank() == dst else None
    dist.gather_object(obj, gathered, dst=dst)
    return gathered


def all_gather_objects(obj) -> list:
    """Every rank's ``obj`` (picklable, small) on every rank, in rank order."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def all_reduce_counts(counts: dict[str, torch.Tensor], op: str = "sum") -> dict[str, torch.Tensor]:
    """Exact reduction of integer tensors over ranks (sum or max), returned on the CPU.

    The tensors must have the same keys, shapes and an integer dtype on every rank (int64 sums
    are exact, unlike float ones whose order of addition changes the last bits). Without a
    process group the input is returned (as int64, on the CPU).

    Args:
        counts (dict[str, torch.Tensor]): per-rank partial counts.
        op (str): ``"sum"`` or ``"max"``.

    Raises:
        ValueError: an unknown ``op``.
        TypeError: a floating-point tensor.
    """
    if op not in ("sum", "max"):
        raise InvalidArgumentError(f"op must be 'sum' or 'max', got {op!r}")
    for name, tensor in counts.items():
        if tensor.is_floating_point() or tensor.is_complex():
            raise InvalidTypeError(
                f"{name!r} is {tensor.dtype}; exact reductions need integer counts")
    out = {name: tensor.detach().to("cpu", torch.int64) for name, tensor in counts.items()}
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return out
    device = (torch.device("cuda", torch.cuda.current_device())
              if dist.get_backend() == "nccl" else torch.device("cpu"))
    reduce_op = dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX
    for name in sorted(out):  # the same order on every rank
        tensor = out[name].to(device)
        dist.all_reduce(tensor, op=reduce_op)
        out[name] = tensor.cpu()
    return out
