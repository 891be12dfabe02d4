"""What identifies a mining run, so a saved state is only ever reused by the same run.

A fingerprint records the model's weights (a hash of every parameter and buffer), the data
(a folder or list of files: the sorted paths with their sizes and modification times; a tensor:
its bytes; a dataset: its type, length, ``describe()`` if it has one), a hash of the first and
last *preprocessed* items (so another ``--size``, crop or normalization is seen), and the
settings (layers, k, per-image count, id offset). Two runs whose fingerprints differ never
share a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from deconv.layers import module_of

__all__ = ["weights_digest", "tensor_digest", "data_identity", "run_fingerprint",
           "fingerprint_differences"]


def tensor_digest(tensor: torch.Tensor, hasher=None) -> str:
    """SHA-1 of a tensor's dtype, shape and bytes (any dtype, any device)."""
    hasher = hasher or hashlib.sha1()
    t = tensor.detach().cpu().contiguous()
    hasher.update(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():
        hasher.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()


def weights_digest(model) -> str:
    """SHA-1 over every parameter and buffer of ``model`` (names, dtypes, shapes, values)."""
    hasher = hashlib.sha1()
    for name, tensor in module_of(model).state_dict().items():
        hasher.update(name.encode())
        tensor_digest(tensor, hasher)
    return hasher.hexdigest()


def _files_digest(files: Sequence) -> dict:
    hasher = hashlib.sha1()
    for f in files:
        path = Path(f)
        try:
            stat = path.stat()
            hasher.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        except OSError:
            hasher.update(f"{path}|missing\n".encode())
    return {"files": len(files), "files_digest": hasher.hexdigest()}


def _item_digest(dataset, index: int) -> str | None:
    with warnings.catch_warnings(record=True):  # a bad file is reported by the run itself
        warnings.simplefilter("always")  # ("ignore" would hide the run's own warning)
        try:
            item = dataset[index]
        except Exception:  # the run will raise a clear error of its own
            return "unreadable"
    if isinstance(item, (tuple, list)):
        item = item[0] if item else None
    if isinstance(item, torch.Tensor):
        return tensor_digest(item)
    return None if item is None else type(item).__name__


def data_identity(data, dataset) -> dict:
    """The identity of a mining source (see the module docstring).

    Args:
        data: the source as the user gave it.
        dataset: ``as_dataset(data)``, or None for a DataLoader / iterable.
    """
    identity: dict = {"source": type(data).__name__}
    inner = dataset
    if inner is None:
        inner = getattr(data, "dataset", None)
        identity["batch_size"] = getattr(data, "batch_size", None)
    while isinstance(inner, torch.utils.data.Subset):
        identity.setdefault("subset", [])
        indices = list(inner.indices)
        identity["subset"].append([indices[0], indices[-1], len(indices)] if indices else [])
        inner = inner.dataset
    if inner is None:
        return identity
    identity["dataset"] = type(inner).__name__
    files = getattr(inner, "files", None)
    if isinstance(files, (list, tuple)):
        identity.update(_files_digest(files))
    items = getattr(inner, "items", None)
    if isinstance(items, (list, tuple)):
        paths = [i for i in items if isinstance(i, (str, Path))]
        if paths:
            identity.update(_files_digest(paths))
        tensors = [i for i in items if isinstance(i, torch.Tensor)]
        if tensors:
            hasher = hashlib.sha1()
            for t in tensors:
                tensor_digest(t, hasher)
            identity["tensors_digest"] = hasher.hexdigest()
    if hasattr(inner, "describe"):
        try:
            identity["describe"] = json.loads(json.dumps(inner.describe(), default=str))
        except TypeError:
            pass
    indexable = dataset if dataset is not None else getattr(data, "dataset", None)
    if indexable is not None and hasattr(indexable, "__len__") and hasattr(
            indexable, "__getitem__"):
        n = len(indexable)
        identity["length"] = n
        if n:
            identity["first_item"] = _item_digest(indexable, 0)
            identity["last_item"] = _item_digest(indexable, n - 1)
    return identity


def run_fingerprint(data, dataset, names: Sequence[str], k: int, per_image: int,
                    id_offset: int, model=None) -> dict:
    """What identifies a mining run in its checkpoint (a resumed run must match it exactly).

    Args:
        data: the source as the user gave it.
        dataset: ``as_dataset(data)`` (``None`` for a DataLoader).
        names (Sequence[str]): resolved module names.
        k (int): entries per channel.
        per_image (int): entries per image and channel.
        id_offset (int): added to every image id.
        model (nn.Module | LoadedModel | None): the network (its weights are hashed).

    Returns:
        dict: JSON-able; compare two with :func:`fingerprint_differences`.
    """
    return {"layers": list(names), "k": k, "per_image": per_image, "id_offset": id_offset,
            "unit": "items" if dataset is not None else "batches",
            "weights": weights_digest(model) if model is not None else None,
            "data": data_identity(data, dataset)}


def fingerprint_differences(saved: dict | None, current: dict) -> list[str]:
    """The top-level keys (and data keys) where two fingerprints differ, for error messages."""
    if not isinstance(saved, dict):
        return ["(the checkpoint records no fingerprint: written by an older deconv)"]
    keys = [key for key in sorted(set(saved) | set(current)) if saved.get(key) != current.get(key)]
    out = []
    for key in keys:
        if key == "data" and isinstance(saved.get("data"), dict):
            sub = sorted(k for k in set(saved["data"]) | set(current["data"])
                         if saved["data"].get(k) != current["data"].get(k))
            out.append(f"data ({', '.join(sub)})")
        elif key == "weights":
            out.append("weights (another model or checkpoint)")
        else:
            out.append(f"{key} ({saved.get(key)!r} -> {current.get(key)!r})")
    return out
