"""Top-k mining and dead-feature-map statistics under ``torch.distributed`` (torchrun).

Each rank processes one contiguous block of the dataset's item indices
(:func:`deconv.distributed.shard_range`) with the single-process code, its image ids being the
GLOBAL dataset indices (``id_offset`` = the block's start). Rank results are then reduced
exactly: top-k results are gathered on rank 0 and merged with :func:`merge_top_k` (the same
total order, value desc / image id asc / position asc, as one process), dead-map counts are
integer all-reduces. So the result is identical, bit for bit, to one process mining everything
whatever the number of ranks, including ranks that get no images.

Fault tolerance: with ``checkpoint="run/state.pt"`` rank ``r`` of ``w`` saves its partial state
to ``run/state.rank{r}-of-{w}.pt`` every ``checkpoint_every`` batches; rerunning the same
command (or torchrun's elastic restart) resumes every rank where its file stopped, and rank 0
writes the merged result, marked finished, to ``run/state.pt``. Resuming needs the same world
size (the shards differ otherwise; the file names say which).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

from deconv.activations import DeadMapCounts, DeadMapStats, dead_map_counts, dead_map_stats
from deconv.distributed import (
    DistributedContext,
    all_gather_objects,
    all_reduce_counts,
    current_context,
    gather_objects,
    shard_range,
)
from deconv.errors import InvalidArgumentError, InvalidTypeError
from deconv.layers import module_of, resolve_layer
from deconv.mining.result import TopKResult, merge_top_k
from deconv.mining.sources import as_dataset
from deconv.mining.top_k import mine_top_k, run_fingerprint

__all__ = ["dead_feature_maps_distributed", "mine_top_k_distributed", "rank_checkpoint",
           "shard_of"]


def rank_checkpoint(checkpoint: str | Path, rank: int, world_size: int) -> Path:
    """The partial-state file of one rank: ``state.pt`` -> ``state.rank{r}-of-{w}.pt``."""
    path = Path(checkpoint)
    return path.with_name(f"{path.stem}.rank{rank}-of-{world_size}{path.suffix or '.pt'}")


def shard_of(dataset, rank: int, world_size: int) -> tuple[torch.utils.data.Subset, int]:
    """Rank ``rank``'s contiguous block of ``dataset`` and the global index of its first item.

    Item ``j`` of the block is ``dataset[start + j]``, so mining it with ``id_offset=start``
    gives global image ids.
    """
    start, stop = shard_range(len(dataset), rank, world_size)
    return torch.utils.data.Subset(dataset, range(start, stop)), start


def _indexable(data, preprocess: Callable | None):
    dataset = as_dataset(data, preprocess)
    if dataset is None:
        raise InvalidTypeError(
            f"distributed mining shards dataset indices, so it needs an indexable "
            f"source (a folder, a list of images, a tensor or a Dataset), not "
            f"{type(data).__name__}; pass the DataLoader's .dataset instead")
    return dataset


def _model_preprocess(model, preprocess: Callable | None) -> Callable | None:
    if preprocess is None and not isinstance(model, torch.nn.Module):
        return getattr(model, "preprocess", None)
    return preprocess


def mine_top_k_distributed(model, data, layers: Sequence[str | int] | str | int, k: int = 9, *,
                           per_image: int = 1, batch_size: int = 32,
                           device: str | torch.device | None = None,
                           preprocess: Callable | None = None, num_workers: int = 0,
                           pin_memory: bool = False, checkpoint: str | Path | None = None,
                           checkpoint_every: int = 50, resume: bool = True,
                           progress: bool = True, stop_early: bool = True, dst: int = 0,
                           all_ranks: bool = False) -> TopKResult | None:
    """:func:`deconv.mine_top_k` over this process's shard, merged exactly over all ranks.

    Call it on every rank of an initialized process group (see
    :func:`deconv.distributed.distributed_session`); without one it mines everything in this
    process. The merged result equals ``mine_top_k(model, data, ...)`` in one process.

    Args:
        model (nn.Module | LoadedModel): the network (left unchanged).
        data: a folder, a list of images, a tensor ``[N, 3, H, W]`` or a Dataset (indexable,
            so that ranks can take disjoint blocks of it; image ids are dataset indices).
        layers (Sequence[str | int] | str | int): module names or paper layer numbers.
        k (int): activations kept per channel.
        per_image (int): at most this many per image and channel.
        batch_size (int): images per forward on each rank.
        device (str | torch.device | None): ``"cuda"`` means ``cuda:LOCAL_RANK``.
        preprocess (Callable | None): PIL image -> model input (a LoadedModel gives one).
        num_workers (int): DataLoader workers per rank.
        pin_memory (bool): page-locked batches for faster host-to-GPU copies.
        checkpoint (str | Path | None): the merged result's file; each rank saves its partial
            state beside it (:func:`rank_checkpoint`) every ``checkpoint_every`` batches, and a
            rerun resumes from those files.
        checkpoint_every (int): batches between per-rank checkpoints.
        resume (bool): continue from existing checkpoints (else start over).
        progress (bool): progress bar (shown on rank 0 only).
        stop_early (bool): skip the layers after the deepest mined one.
        dst (int): the rank that receives (and saves) the merged result.
        all_ranks (bool): return the merged result on every rank (``all_gather_object``).

    Returns:
        TopKResult | None: the merged result on ``dst`` (every rank with ``all_ranks``), None on
        the other ranks. ``meta["distributed"]`` records the world size, shards and per-rank
        throughput; ``meta["images_per_second"]`` is images / slowest rank's seconds.

    Raises:
        TypeError: a DataLoader or other non-indexable source.
        ValueError: as :func:`deconv.mine_top_k` (bad settings, a checkpoint of another run).
    """
    context = current_context(device)
    preprocess = _model_preprocess(model, preprocess)
    dataset = _indexable(data, preprocess)
    _check_same_weights(model)
    if isinstance(layers, (str, int)):
        layers = [layers]
    names = list(dict.fromkeys(resolve_layer(model, layer) for layer in layers))
    whole = run_fingerprint(data, dataset, names, k, per_image, 0, model=model)
    shard, start = shard_of(dataset, context.rank, context.world_size)
    state = None
    if checkpoint is not None:
        state = rank_checkpoint(checkpoint, context.rank, context.world_size)
    began = time.perf_counter()
    partial = mine_top_k(model, shard, names, k, per_image=per_image, batch_size=batch_size,
                         device=context.device if device is not None else None,
                         preprocess=preprocess, id_offset=start, num_workers=num_workers,
                         pin_memory=pin_memory, checkpoint=state,
                         checkpoint_every=checkpoint_every, resume=resume,
                         progress=progress and context.is_main, stop_early=stop_early)
    # Cumulative over resumed runs (meta, rounded to 10 ms), at least this call's wall time.
    seconds = max(float(partial.meta.get("seconds", 0.0)), time.perf_counter() - began)
    report = {"rank": context.rank, "first_id": start, "items": len(shard),
              "images_seen": partial.images_seen, "seconds": seconds,
              "images_per_second": partial.meta.get("images_per_second")}
    partial.meta = {"shard": report}
    if all_ranks:
        parts = all_gather_objects(partial)
    else:
        parts = gather_objects(partial, dst=dst)
        if context.rank != dst:
            return None
    merged = merge_top_k(*parts)
    reports = [part.meta["shard"] for part in parts]
    slowest = max((r["seconds"] for r in reports), default=0.0)
    merged.meta = {
        "order": "value desc, image id asc, position asc",
        "convention": "spatial max per image, then k best images" if per_image == 1
        else f"up to {per_image} positions per image",
        "seconds": round(slowest, 2),
        "images_per_second": round(merged.images_seen / slowest, 2) if slowest else None,
        "distributed": {"world_size": context.world_size, "backend": context.backend,
                        "sharding": "contiguous blocks of dataset indices", "ranks": reports},
    }
    if checkpoint is not None and context.rank == dst:
        # Marked as the finished single-process run, so mine_top_k(checkpoint=...) reuses it.
        merged.meta["progress"] = {"consumed": len(dataset), "unit": "items", "complete": True,
                                   "fingerprint": whole}
        merged.save(checkpoint)
    return merged


def _check_same_weights(model) -> None:
    """Raise if the ranks hold different parameters or buffers (e.g. unseeded random init)."""
    state = module_of(model).state_dict()
    summary = [(name, tuple(t.shape), float(t.detach().double().nansum()) if t.is_floating_point()
                else int(t.sum())) for name, t in state.items()]
    summaries = all_gather_objects(summary)
    if any(other != summaries[0] for other in summaries[1:]):
        raise InvalidArgumentError(
            "the ranks hold different model weights, so their shards are not "
            "comparable; load the same checkpoint (or seed the random init) on "
            "every rank")


@contextlib.contextmanager
def _placed(model, device: torch.device | None) -> Iterator[None]:
    """Move the model to ``device`` for the block and back (parameters' device)."""
    module = module_of(model)
    param = next(module.parameters(), None)
    home = param.device if param is not None else torch.device("cpu")
    moved = device is not None and device != home
    try:
        if moved:
            module.to(device)
        yield
    finally:
        if moved:
            module.to(home)


def dead_feature_maps_distributed(model, data, layers: Sequence[str | int], *,
                                  atol: float = 0.0, dead_fraction: float = 0.99,
                                  batch_size: int = 32, device: str | torch.device | None = None,
                                  preprocess: Callable | None = None, progress: bool = True,
                                  ) -> dict[str, DeadMapStats]:
    """:func:`deconv.dead_feature_maps` with each rank counting its shard, reduced exactly.

    Per rank: :func:`deconv.activations.dead_map_counts` on its contiguous block; then the
    channel counts are all-reduced with MAX (so a rank that saw no image learns each layer's
    width) and the integer counts with SUM. Every rank returns the same statistics, identical
    to one process.

    Args: as :func:`deconv.dead_feature_maps`, plus ``device`` (``"cuda"`` means
        ``cuda:LOCAL_RANK``).

    Returns:
        dict[str, DeadMapStats]: per module name, on every rank.
    """
    context: DistributedContext = current_context(device)
    preprocess = _model_preprocess(model, preprocess)
    dataset = _indexable(data, preprocess)
    _check_same_weights(model)
    shard, _ = shard_of(dataset, context.rank, context.world_size)
    with _placed(model, context.device if device is not None else None):
        counts = dead_map_counts(model, shard, layers, atol=atol, batch_size=batch_size,
                                 preprocess=preprocess, progress=progress and context.is_main)
    names = list(counts.active)
    widths = all_reduce_counts({n: torch.tensor([counts.active[n].numel()]) for n in names},
                               op="max")
    partial = {"images": torch.tensor([counts.images])}
    for n in names:
        width = int(widths[n])
        active = counts.active[n] if counts.active[n].numel() else torch.zeros(width,
                                                                               dtype=torch.long)
        partial[f"active/{n}"] = active
        partial[f"zeros/{n}"] = torch.tensor([counts.zeros[n]])
        partial[f"totals/{n}"] = torch.tensor([counts.totals[n]])
    total = all_reduce_counts(partial, op="sum")
    reduced = DeadMapCounts(int(total["images"]), {n: total[f"active/{n}"] for n in names},
                            {n: int(total[f"zeros/{n}"]) for n in names},
                            {n: int(total[f"totals/{n}"]) for n in names})
    return dead_map_stats(reduced, atol, dead_fraction)
