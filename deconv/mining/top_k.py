"""Streaming top-k mining: the k strongest activations of every channel over a dataset.

This is the data behind Zeiler & Fergus (2014), Fig. 2 ("top 9 activations in a random subset
of feature maps across the validation data"). One pass, one forward per batch; memory is
O(layers x channels x k) whatever the dataset size.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from deconv.errors import CheckpointMismatchError, InvalidArgumentError, InvalidImageError
from deconv.layers import module_of, resolve_layer
from deconv.mining.fingerprint import fingerprint_differences, run_fingerprint
from deconv.mining.result import TopKResult, select_top_k
from deconv.mining.sources import as_dataset, iter_batches
from deconv.mining.taps import LayerTaps
from deconv.samples import ImageFiles

__all__ = ["mine_top_k", "batch_candidates", "run_fingerprint"]


def batch_candidates(output: torch.Tensor, per_image: int
                     ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per image and channel, the ``per_image`` largest activations and their positions.

    Args:
        output (torch.Tensor): a layer output ``[B, C, H, W]`` or ``[B, C]``.
        per_image (int): candidates per image and channel; 1 gives the spatial max (first
            position in row-major order on ties).

    Returns:
        tuple[torch.Tensor, torch.Tensor, int]: values ``[C, B * m]``, flat positions
        ``[C, B * m]`` (image-major: the ``m`` candidates of image 0 first) and ``m``.
    """
    if output.ndim == 2:
        output = output[:, :, None]
    elif output.ndim == 4:
        output = output.flatten(2)
    else:
        raise InvalidArgumentError(
            f"can mine outputs of shape [B, C, H, W] or [B, C], got "
                      f"{tuple(output.shape)}; choose a convolutional or linear layer")
    if per_image == 1:
        values, positions = output.max(dim=2)  # first maximal position on ties
        return values.t(), positions.t(), 1
    m = min(per_image, output.shape[2])
    values, positions = output.sort(dim=2, descending=True, stable=True)
    values, positions = values[..., :m], positions[..., :m]
    b, c = output.shape[:2]
    return (values.permute(1, 0, 2).reshape(c, b * m),
            positions.permute(1, 0, 2).reshape(c, b * m), m)


def mine_top_k(model, data, layers: Sequence[str | int] | str | int, k: int = 9, *,
               per_image: int = 1, batch_size: int = 32, device: str | torch.device | None = None,
               preprocess: Callable | None = None, id_offset: int = 0, num_workers: int = 0,
               pin_memory: bool = False,
               checkpoint: str | Path | None = None, checkpoint_every: int = 50,
               resume: bool = True, progress: bool = True, stop_early: bool = True,
               ) -> TopKResult:
    """Find, for every channel of each layer, the k strongest activations over a dataset.

    Convention (Zeiler & Fergus, Fig. 2): per image the spatial maximum of each feature map is
    taken, then the k best images, so the k entries of a channel come from k distinct images.
    ``per_image=m`` keeps up to ``m`` positions per image instead (the ``m`` largest values of
    the map, which may be neighbours). Ties are broken by image id, then position, so the
    result is exact and does not depend on batch size, sharding (:func:`merge_top_k`) or
    resuming.

    Each layer's output is reduced inside its forward hook (safe with inplace ReLUs); the
    forward pass stops after the deepest mined layer (``stop_early``). Hooks are removed and
    the model's train/eval flags and device restored even if an error occurs.

    Args:
        model (nn.Module | LoadedModel): the network (a LoadedModel also gives ``preprocess``
            and paper layer numbers).
        data: a folder of images, a list of images/paths, a tensor ``[N, 3, H, W]``, a Dataset
            (items: tensor, ``(tensor, ...)`` or ``None`` for a bad image) or a DataLoader
            (batches: tensor, ``(images, ...)`` or ``None``). Image ids are dataset indices
            (+ ``id_offset``); for a DataLoader, positions in its stream (or the ids
            :func:`deconv.samples.collate_skip_bad` returns).
        layers (Sequence[str | int] | str | int): module names or paper layer numbers.
        k (int): activations kept per channel.
        per_image (int): at most this many per image and channel.
        batch_size (int): images per forward (ignored for a DataLoader).
        device (str | torch.device | None): where to run; the model is moved there and back.
        preprocess (Callable | None): PIL image -> model input, for folders and image lists.
        id_offset (int): added to every image id (give shards disjoint ranges).
        num_workers (int): DataLoader workers decoding images.
        pin_memory (bool): page-locked batches (indexable sources), copied to a CUDA device
            without blocking; no effect on the result.
        checkpoint (str | Path | None): a file to save the running state to every
            ``checkpoint_every`` batches and at the end; with ``resume`` an unfinished run
            continues from it (same data, same order), a finished one is returned as is.
        checkpoint_every (int): batches between checkpoints.
        resume (bool): continue from ``checkpoint`` if it exists (else start over).
        progress (bool): show a tqdm bar (images/s, skipped count).
        stop_early (bool): skip the layers after the deepest mined one.

    Returns:
        TopKResult: the entries (on CPU), ``images_seen``, ``skipped_ids``; ``meta`` records
        the run (throughput, settings).

    Raises:
        ValueError: bad ``k``/``per_image``/``batch_size``, or a checkpoint of another run.
    """
    if isinstance(layers, (str, int)):
        layers = [layers]
    for name, value in (("k", k), ("per_image", per_image), ("checkpoint_every",
                                                             checkpoint_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgumentError(f"{name} must be a positive int, got {value!r}")
    names = list(dict.fromkeys(resolve_layer(model, layer) for layer in layers))
    if preprocess is None:
        preprocess = getattr(model, "preprocess", None) if not isinstance(
            model, torch.nn.Module) else None
    module = module_of(model)
    dataset = as_dataset(data, preprocess)
    unit = "items" if dataset is not None else "batches"
    fingerprint = run_fingerprint(data, dataset, names, k, per_image, id_offset, model=model)

    result = TopKResult(names, k, per_image)
    consumed = 0
    if checkpoint is not None and resume and Path(checkpoint).is_file():
        result = TopKResult.load(checkpoint)
        state = result.meta.get("progress", {})
        if state.get("fingerprint") != fingerprint:
            differences = fingerprint_differences(state.get("fingerprint"), fingerprint)
            raise CheckpointMismatchError(
                f"checkpoint {checkpoint} belongs to another run: it differs in "
                f"{'; '.join(differences)}. Delete it, give another --checkpoint file, or "
                f"pass resume=False to start over")
        if state.get("complete"):
            return result
        consumed = int(state["consumed"])
        # A DataLoader is read again from its start, so its skipped files are found again.
        if dataset is None:
            result.skipped_ids = []

    param = next(module.parameters(), None)
    home = param.device if param is not None else torch.device("cpu")
    run_device = torch.device(device) if device is not None else home
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    batches, total = iter_batches(data, batch_size, preprocess, start=consumed,
                                  num_workers=num_workers, pin_memory=pin_memory)
    current_ids: list[torch.Tensor] = []

    def reduce(name: str, output: torch.Tensor) -> None:
        values, positions, m = batch_candidates(output.detach(), per_image)
        ids = current_ids[0].to(values.device).repeat_interleave(m)[None].expand_as(values)
        if name not in result.values:
            size = tuple(output.shape[2:]) if output.ndim == 4 else (1, 1)
            result.map_sizes[name] = size
            result.values[name] = values.new_full((values.shape[0], 0), -float("inf"))
            result.image_ids[name] = ids.new_full((values.shape[0], 0), -1)
            result.positions[name] = ids.new_full((values.shape[0], 0), -1)
        area = result.map_sizes[name][0] * result.map_sizes[name][1]
        # Staged until the whole batch has gone through (see commit): a state saved after an
        # interruption inside a forward then holds whole batches only, so a resume is exact.
        pending[name] = select_top_k(
            torch.cat([result.values[name].to(values), values], 1),
            torch.cat([result.image_ids[name].to(ids.device), ids], 1),
            torch.cat([result.positions[name].to(ids.device), positions], 1), k, area)

    pending: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def commit() -> None:
        for name, (v, i, p) in pending.items():
            result.values[name], result.image_ids[name], result.positions[name] = v, i, p
        pending.clear()

    earlier_seconds = float(result.meta.get("seconds", 0.0))  # of the runs before a resume

    def save(complete: bool) -> None:
        result.meta["progress"] = {"consumed": consumed, "unit": unit, "complete": complete,
                                   "fingerprint": fingerprint}
        result.meta["seconds"] = round(earlier_seconds + time.perf_counter() - start_time, 2)
        if checkpoint is not None:
            result.to("cpu").save(checkpoint)

    bar = tqdm(total=total, unit="img" if unit == "items" else "batch", disable=not progress,
               desc=f"mining {len(names)} layer(s)", dynamic_ncols=True)
    start_time, seen_here, batch_count = time.perf_counter(), 0, 0
    moved = run_device != home
    try:
        if moved:
            module.to(run_device)
        with LayerTaps(model, names, reduce, stop_early=stop_early) as taps:
            for batch in batches:
                if batch.skipped_ids:
                    result.skipped_ids.extend(int(i) + id_offset for i in batch.skipped_ids)
                if len(batch.ids):
                    _check_finite_batch(batch.images, batch.ids + id_offset)
                    current_ids[:] = [batch.ids + id_offset]
                    pending.clear()
                    taps.run(batch.images.to(run_device, dtype,
                                             non_blocking=run_device.type == "cuda"))
                    commit()
                    result.images_seen += len(batch.ids)
                    seen_here += len(batch.ids)
                consumed += batch.consumed if unit == "items" else 1
                batch_count += 1
                bar.update(batch.consumed if unit == "items" else 1)
                rate = seen_here / max(time.perf_counter() - start_time, 1e-9)
                bar.set_postfix(img_s=f"{rate:.1f}", skipped=result.skipped, refresh=False)
                if batch_count % checkpoint_every == 0:
                    save(complete=False)
    except (KeyboardInterrupt, Exception):
        # Ctrl-C or a crash: keep every batch finished so far (a rerun resumes from here).
        if checkpoint is not None and consumed:
            save(complete=False)
        raise
    finally:
        bar.close()
        if moved:
            module.to(home)
    if dataset is None:
        loader_dataset = getattr(data, "dataset", None)
        if isinstance(loader_dataset, ImageFiles) and getattr(data, "num_workers", 1) == 0:
            result.skipped_ids = sorted(int(i) + id_offset for i in loader_dataset.bad)
    elapsed = time.perf_counter() - start_time
    result.meta.update({"images_per_second": round(seen_here / elapsed, 2) if elapsed else None,
                        "order": "value desc, image id asc, position asc",
                        "convention": "spatial max per image, then k best images"
                        if per_image == 1 else f"up to {per_image} positions per image"})
    result = result.to("cpu")
    save(complete=True)
    return result


def _check_finite_batch(images: torch.Tensor, ids: torch.Tensor) -> None:
    """Refuse NaN/Inf inputs: they would give ``-inf``/NaN entries with no warning."""
    if images.is_floating_point():
        bad = ~torch.isfinite(images.flatten(1)).all(dim=1)
        if bool(bad.any()):
            raise InvalidImageError(
                f"images {ids[bad.to(ids.device)].tolist()[:10]} contain NaN or Inf values; "
                f"clean them (e.g. torch.nan_to_num) or leave them out of the data")
