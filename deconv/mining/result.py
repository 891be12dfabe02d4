"""The result of top-k mining: per channel of each layer the k strongest (value, image, y, x).

Order (total, so results are exact and independent of batching, sharding and resuming): value
descending, then image id ascending, then position ``y * W + x`` ascending. Empty slots (fewer
candidates than k) hold value ``-inf``, image id ``-1`` and position ``-1``, and sort last.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch

from deconv.errors import CheckpointError, InvalidArgumentError, OutOfRangeError, UnknownNameError

__all__ = ["TopKEntry", "TopKResult", "merge_top_k", "select_top_k"]

FORMAT = "deconv.topk/1"
_EMPTY_KEY = torch.iinfo(torch.int64).max


class TopKEntry(NamedTuple):
    """One mined activation: its value, the image id and the position in the feature map."""

    value: float
    image_id: int
    y: int
    x: int


def select_top_k(values: torch.Tensor, image_ids: torch.Tensor, positions: torch.Tensor,
                 k: int, map_area: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep, per row, the ``k`` best candidates by (value desc, image id asc, position asc).

    Args:
        values (torch.Tensor): ``[C, N]`` candidate values (NaN is treated as ``-inf``).
        image_ids (torch.Tensor): ``[C, N]`` int64 image ids, ``-1`` for an empty slot.
        positions (torch.Tensor): ``[C, N]`` int64 flat positions ``y * W + x``.
        k (int): how many to keep; rows with fewer than ``k`` candidates are padded as empty.
        map_area (int): ``H * W`` of the feature map (positions are below it).

    Returns:
        tuple[torch.Tensor, torch.Tensor, torch.Tensor]: values, image ids, positions, ``[C, k]``.
    """
    if values.shape[1] < k:
        pad = k - values.shape[1]
        values = torch.cat([values, values.new_full((values.shape[0], pad), -float("inf"))], 1)
        image_ids = torch.cat([image_ids, image_ids.new_full((image_ids.shape[0], pad), -1)], 1)
        positions = torch.cat([positions, positions.new_full((positions.shape[0], pad), -1)], 1)
    values = torch.where(torch.isnan(values), -float("inf"), values)
    key = torch.where(image_ids < 0, _EMPTY_KEY, image_ids * map_area + positions)
    order = torch.argsort(key, dim=1)  # keys are unique among real candidates
    order = order.gather(1, torch.argsort(values.gather(1, order), dim=1, descending=True,
                                          stable=True))[:, :k]
    return values.gather(1, order), image_ids.gather(1, order), positions.gather(1, order)


@dataclass(eq=False)
class TopKResult:
    """Top-k activations per channel of each mined layer (see :func:`deconv.mine_top_k`).

    Attributes:
        layers (list[str]): module names, in the order mined.
        k (int): entries kept per channel.
        per_image (int): at most this many entries per image and channel (1: k distinct images).
        values (dict[str, torch.Tensor]): ``[C, k]`` activation values, best first.
        image_ids (dict[str, torch.Tensor]): ``[C, k]`` int64 image ids (``-1``: empty slot).
        positions (dict[str, torch.Tensor]): ``[C, k]`` int64 ``y * W + x`` in the feature map.
        map_sizes (dict[str, tuple[int, int]]): ``(H, W)`` of each layer's feature maps
            (``(1, 1)`` for a ``[B, C]`` output).
        images_seen (int): images that went through the model.
        skipped_ids (list[int]): ids of images that could not be read (skipped, not fatal).
        meta (dict): JSON-able notes (model, dataset, progress of a resumable run).
    """

    layers: list[str]
    k: int
    per_image: int
    values: dict[str, torch.Tensor] = field(default_factory=dict)
    image_ids: dict[str, torch.Tensor] = field(default_factory=dict)
    positions: dict[str, torch.Tensor] = field(default_factory=dict)
    map_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    images_seen: int = 0
    skipped_ids: list[int] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    # ----------------------------------------------------------------------------- reading
    def channels(self, layer: str) -> int:
        """Number of channels mined at ``layer``."""
        return int(self.values[self._check(layer)].shape[0])

    def ys(self, layer: str) -> torch.Tensor:
        """``[C, k]`` rows of the entries in the feature map (``-1``: empty)."""
        layer = self._check(layer)
        pos = self.positions[layer]
        return torch.where(pos < 0, -1, pos // self.map_sizes[layer][1])

    def xs(self, layer: str) -> torch.Tensor:
        """``[C, k]`` columns of the entries in the feature map (``-1``: empty)."""
        layer = self._check(layer)
        pos = self.positions[layer]
        return torch.where(pos < 0, -1, pos % self.map_sizes[layer][1])

    def top(self, layer: str, channel: int) -> list[TopKEntry]:
        """The non-empty entries of one channel, best first."""
        layer = self._check(layer)
        if not 0 <= channel < self.channels(layer):
            raise OutOfRangeError(f"channel {channel} out of range: layer {layer!r} has "
                                       f"{self.channels(layer)} channels")
        ys, xs = self.ys(layer)[channel], self.xs(layer)[channel]
        return [TopKEntry(float(v), int(i), int(y), int(x))
                for v, i, y, x in zip(self.values[layer][channel], self.image_ids[layer][channel],
                                      ys, xs) if i >= 0]

    @property
    def skipped(self) -> int:
        """Number of images skipped because they could not be read."""
        return len(self.skipped_ids)

    def _check(self, layer: str) -> str:
        if layer not in self.values and layer in self.layers and self.images_seen == 0:
            raise InvalidArgumentError(
                f"layer {layer!r} has no entries: no image went through the model "
                f"({self.skipped} could not be read); check the data")
        if layer not in self.values:
            raise UnknownNameError(f"layer {layer!r} was not mined; mined layers: {self.layers}")
        return layer

    # ----------------------------------------------------------------------------- combining
    def merge(self, other: TopKResult) -> TopKResult:
        """Combine with a result mined on other images; equals mining both at once.

        Image ids of the two must be disjoint (mine shards with different ``id_offset``).

        Raises:
            ValueError: different layers, k, per_image or map sizes, or shared image ids.
        """
        return merge_top_k(self, other)

    def equals(self, other: TopKResult) -> bool:
        """Exact equality of the mined entries, layers, sizes and counts (``meta`` ignored)."""
        if not isinstance(other, TopKResult):
            return False
        same = (self.layers == other.layers and self.k == other.k
                and self.per_image == other.per_image and self.map_sizes == other.map_sizes
                and self.images_seen == other.images_seen
                and sorted(self.skipped_ids) == sorted(other.skipped_ids)
                and set(self.values) == set(other.values))
        return same and all(
            torch.equal(getattr(self, f)[n].cpu(), getattr(other, f)[n].cpu())
            for n in self.values for f in ("values", "image_ids", "positions"))

    __eq__ = equals
    __hash__ = None

    def to(self, device: str | torch.device) -> TopKResult:
        """A copy with the tensors on ``device``."""
        return TopKResult(
            list(self.layers), self.k, self.per_image,
            {n: t.to(device) for n, t in self.values.items()},
            {n: t.to(device) for n, t in self.image_ids.items()},
            {n: t.to(device) for n, t in self.positions.items()},
            dict(self.map_sizes), self.images_seen, list(self.skipped_ids),
            json.loads(json.dumps(self.meta)))

    # ----------------------------------------------------------------------------- files
    def save(self, path: str | Path) -> Path:
        """Write the result to ``path`` atomically (plain tensors + JSON; no pickled code).

        Load it back with :meth:`load` (``torch.load(weights_only=True)``).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"format": FORMAT, "layers": self.layers, "k": self.k,
                  "per_image": self.per_image,
                  "map_sizes": {n: list(s) for n, s in self.map_sizes.items()},
                  "images_seen": self.images_seen, "skipped_ids": self.skipped_ids,
                  "meta": self.meta}
        tensors = {str(n): {"values": self.values[n].detach().cpu().contiguous(),
                       "image_ids": self.image_ids[n].cpu().contiguous(),
                       "positions": self.positions[n].cpu().contiguous()} for n in self.values}
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"header": json.dumps(header), "tensors": tensors}, tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TopKResult:
        """Read a result written by :meth:`save` (safe: ``weights_only=True``).

        Raises:
            MissingFileError: no such file. CheckpointError: the file is empty, truncated,
            corrupt or not a deconv top-k result (a ``ValueError``).
        """
        from deconv.validation import read_checkpoint

        data = read_checkpoint(path, "top-k result")
        if not isinstance(data, dict) or "header" not in data:
            raise CheckpointError(f"{path} is not a deconv top-k result file (no header); give "
                                  f"a file written by TopKResult.save or deconv topk")
        try:
            header = json.loads(data["header"])
            if header.get("format") != FORMAT:
                raise CheckpointError(f"{path}: unsupported format {header.get('format')!r}; "
                                      f"expected {FORMAT!r}")
            tensors = data["tensors"]
            return cls(header["layers"], header["k"], header["per_image"],
                       {n: t["values"] for n, t in tensors.items()},
                       {n: t["image_ids"] for n, t in tensors.items()},
                       {n: t["positions"] for n, t in tensors.items()},
                       {n: tuple(s) for n, s in header["map_sizes"].items()},
                       header["images_seen"], list(header["skipped_ids"]), header["meta"])
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path} is a damaged deconv top-k result ({type(exc).__name__}: "
                                  f"{exc}); delete it and mine again") from exc


def merge_top_k(first: TopKResult, *others: TopKResult) -> TopKResult:
    """Merge results mined on disjoint image sets; equals one run over all the images.

    Raises:
        ValueError: different layers, k, per_image or map sizes, or shared image ids.
    """
    out = first.to("cpu")
    for other in others:
        if (other.layers != out.layers or other.k != out.k or other.per_image != out.per_image):
            raise InvalidArgumentError(
                f"cannot merge: layers/k/per_image differ ({out.layers}, {out.k}, "
                f"{out.per_image}) vs ({other.layers}, {other.k}, "
                f"{other.per_image}); mine the shards with the same settings")
        for name in other.values:
            if name in out.values and out.map_sizes[name] != other.map_sizes[name]:
                raise InvalidArgumentError(
                    f"cannot merge layer {name!r}: feature maps of size "
                    f"{out.map_sizes[name]} vs {other.map_sizes[name]}; mine the "
                    f"shards at the same input size")
            if name not in out.values:
                out.values[name] = other.values[name].cpu()
                out.image_ids[name] = other.image_ids[name].cpu()
                out.positions[name] = other.positions[name].cpu()
                out.map_sizes[name] = other.map_sizes[name]
                continue
            area = out.map_sizes[name][0] * out.map_sizes[name][1]
            values, ids, pos = select_top_k(
                torch.cat([out.values[name], other.values[name].cpu()], 1),
                torch.cat([out.image_ids[name], other.image_ids[name].cpu()], 1),
                torch.cat([out.positions[name], other.positions[name].cpu()], 1), out.k, area)
            _check_disjoint(ids, pos if out.per_image > 1 else torch.zeros_like(pos), name)
            out.values[name], out.image_ids[name], out.positions[name] = values, ids, pos
        out.images_seen += other.images_seen
        out.skipped_ids = sorted(set(out.skipped_ids) | set(other.skipped_ids))
    out.meta.pop("progress", None)
    out.meta["merged_from"] = 1 + len(others)
    return out


def _check_disjoint(ids: torch.Tensor, positions: torch.Tensor, name: str) -> None:
    """Raise if one (image, position) appears twice in a row: the shards shared image ids."""
    key = torch.where(ids < 0, -1 - torch.arange(ids.shape[1]), ids * (1 << 32) + positions)
    ordered = key.sort(dim=1).values
    if bool((ordered[:, 1:] == ordered[:, :-1]).any()):
        raise InvalidArgumentError(
            f"cannot merge layer {name!r}: the same image id occurs in both "
                      f"results; give each shard its own id range (id_offset=...)")
