"""Turn what a user has (a folder, a list of images, a Dataset, a DataLoader, the offline sample
photos) into batches of model inputs with global image ids.

Image ids: for everything except a user ``DataLoader`` the id of an image is its index in the
dataset (plus ``id_offset``), so results can be traced back with ``dataset[id - id_offset]``.
A corrupt file gives ``None`` and is skipped and counted, never fatal.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from deconv.errors import InvalidArgumentError, InvalidTypeError
from deconv.samples import (
    CorruptImageError,
    ImageFiles,
    SampleImage,
    collate_skip_bad,
    sample_images,
    to_pil,
)

__all__ = ["Batch", "ImageList", "SampleCrops", "as_dataset", "iter_batches"]

Preprocess = Callable[[Image.Image], torch.Tensor]


@dataclass
class Batch:
    """One batch of model inputs.

    Attributes:
        images (torch.Tensor): ``[B, 3, H, W]`` model inputs.
        ids (torch.Tensor): ``[B]`` int64 global image ids.
        skipped_ids (list[int]): ids of items of this batch that could not be read.
        consumed (int): dataset items this batch used up (images plus skipped ones).
    """

    images: torch.Tensor
    ids: torch.Tensor
    skipped_ids: list[int] = field(default_factory=list)
    consumed: int = 0

    def pin_memory(self) -> Batch:
        """The batch with its images in page-locked memory (DataLoader ``pin_memory=True``)."""
        return Batch(self.images.pin_memory(), self.ids, self.skipped_ids, self.consumed)


class ImageList(torch.utils.data.Dataset):
    """A dataset over a list of images: PIL images, arrays, file paths, SampleImages or tensors.

    Item ``i`` is the preprocessed tensor ``[3, H, W]``, or ``None`` (with a warning) when a
    file cannot be decoded. Tensors are taken as already preprocessed.

    Args:
        items (Sequence): the images.
        preprocess (Callable[[PIL.Image.Image], torch.Tensor] | None): e.g.
            ``LoadedModel.preprocess``; required unless every item is a tensor.
    """

    def __init__(self, items: Sequence, preprocess: Preprocess | None = None):
        self.items = list(items)
        self.preprocess = preprocess
        if preprocess is None and not all(isinstance(x, torch.Tensor) for x in self.items):
            raise InvalidArgumentError(
                "images that are not tensors need a preprocess function: pass "
                "preprocess=loaded.preprocess or a deconv LoadedModel as the model")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> torch.Tensor | None:
        item = self.items[index]
        if isinstance(item, torch.Tensor):
            return item
        if isinstance(item, SampleImage):
            item = item.image
        try:
            return self.preprocess(to_pil(item))
        except CorruptImageError as exc:
            warnings.warn(f"skipping {exc}", stacklevel=2)
            return None


class SampleCrops(torch.utils.data.Dataset):
    """Many square crops at several scales of the offline sample photos: the default dataset.

    For each photo (in :func:`deconv.samples.sample_images` order) and each scale ``s``, square
    crops of side ``round(s * min(H, W))`` are taken on a regular grid whose step is
    ``side * (1 - overlap)`` (the last crop of a row/column touches the border), in row-major
    order; each crop is resized to ``size`` x ``size`` (bilinear) and preprocessed.

    Args:
        preprocess (Callable[..., torch.Tensor]): ``LoadedModel.preprocess`` (called with
            ``size=`` and ``crop=False``) or any ``f(PIL image) -> tensor``.
        names (Sequence[str] | str): sample photo names, or ``"all"``.
        scales (Sequence[float]): crop sides as fractions of the photo's short side.
        size (int): side of every crop after resizing.
        overlap (float): fraction of overlap between neighbouring crops, in [0, 1).
    """

    def __init__(self, preprocess: Callable[..., torch.Tensor], names: Sequence[str] | str = "all",
                 scales: Sequence[float] = (1.0, 0.5, 0.25), size: int = 128,
                 overlap: float = 0.5):
        if not 0 <= overlap < 1:
            raise InvalidArgumentError(f"overlap must be in [0, 1), got {overlap}")
        if not scales or any(not 0 < s <= 1 for s in scales):
            raise InvalidArgumentError(f"scales must be fractions in (0, 1], got {scales}")
        self.preprocess = preprocess
        self.samples = sample_images(names)
        self.scales = tuple(scales)
        self.size = size
        self.overlap = overlap
        self.crops: list[tuple[int, float, tuple[int, int, int, int]]] = []
        for i, sample in enumerate(self.samples):
            w, h = sample.image.size
            for scale in self.scales:
                side = max(1, round(scale * min(w, h)))
                step = max(1, round(side * (1 - overlap)))
                for top in _grid(h, side, step):
                    for left in _grid(w, side, step):
                        self.crops.append((i, scale, (left, top, left + side, top + side)))

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> torch.Tensor:
        photo, _, box = self.crops[index]
        crop = self.samples[photo].image.crop(box).resize((self.size, self.size),
                                                           Image.BILINEAR)
        try:
            return self.preprocess(crop, size=self.size, crop=False)
        except TypeError:  # a plain f(image) -> tensor
            return self.preprocess(crop)

    def source_boxes(self, ids: torch.Tensor, boxes: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Map boxes in crop pixels to the source photo's pixels.

        Args:
            ids (torch.Tensor): ``[N]`` crop indices.
            boxes (torch.Tensor): ``[N, 4]`` boxes ``(top, left, bottom, right)`` in the
                ``size`` x ``size`` crop.

        Returns:
            tuple[torch.Tensor, torch.Tensor]: the photo index of each crop ``[N]`` (int64) and
            the boxes in that photo's pixels ``[N, 4]`` (float64), for
            :func:`deconv.mining.distinct.field_regions`.
        """
        table = torch.tensor([[photo, box[1], box[0], (box[2] - box[0]) / self.size]
                              for photo, _, box in self.crops], dtype=torch.float64)
        rows = table[ids.long()]
        scale = rows[:, 3:4]
        offset = torch.stack([rows[:, 1], rows[:, 2], rows[:, 1], rows[:, 2]], dim=1)
        return rows[:, 0].long(), boxes.double() * scale + offset

    def describe(self, index: int | None = None) -> dict:
        """How the dataset (or crop ``index``) was built, for JSON records and captions."""
        if index is not None:
            photo, scale, box = self.crops[index]
            return {"photo": self.samples[photo].name, "scale": scale, "box_ltrb": list(box)}
        return {
            "kind": "crops of the offline sample photos",
            "photos": [s.name for s in self.samples], "scales": list(self.scales),
            "overlap": self.overlap, "size": self.size, "crops": len(self.crops),
            "rule": "per photo and scale: squares of side scale*min(H, W) on a grid of step "
                    "side*(1-overlap), last one flush with the border, row-major; resized to "
                    "size x size (bilinear)",
        }


def _grid(length: int, side: int, step: int) -> list[int]:
    if side >= length:
        return [0]
    count = math.ceil((length - side) / step) + 1
    return sorted({min(i * step, length - side) for i in range(count)})


def as_dataset(data, preprocess: Preprocess | None = None):
    """Return ``data`` as an indexable dataset, or ``None`` for a DataLoader / other iterable.

    Args:
        data: a folder (str | Path), a list of images or paths, a tensor ``[N, 3, H, W]``, a
            ``torch.utils.data.Dataset`` (items: tensor, ``(tensor, ...)`` or ``None``), or a
            DataLoader / iterable of batches (returns ``None``).
        preprocess (Callable | None): turns a PIL image into a model input.
    """
    if isinstance(data, (str, Path)):
        if preprocess is None:
            raise InvalidArgumentError(
                "mining a folder needs preprocess=loaded.preprocess (or pass a "
                "deconv LoadedModel as the model)")
        return ImageFiles(data, transform=preprocess)
    if isinstance(data, torch.Tensor):
        if data.ndim != 4:
            raise InvalidArgumentError(
                f"a tensor of images must be [N, C, H, W], got {tuple(data.shape)}")
        return ImageList(list(data.unbind(0)))
    if isinstance(data, torch.utils.data.DataLoader):
        return None
    if isinstance(data, torch.utils.data.Dataset):
        return data
    if isinstance(data, (list, tuple)):
        return ImageList(data, preprocess)
    if hasattr(data, "__iter__"):
        return None
    raise InvalidTypeError(f"cannot mine {type(data).__name__}: give a folder, a list of images, a "
                                  f"tensor [N, 3, H, W], a Dataset or a DataLoader")


class _Indexed(torch.utils.data.Dataset):
    """Wrap a dataset so that item ``j`` is ``(start + j, dataset[start + j])``."""

    def __init__(self, dataset, start: int):
        self.dataset = dataset
        self.start = start

    def __len__(self) -> int:
        return len(self.dataset) - self.start

    def __getitem__(self, j: int):
        index = self.start + j
        return index, self.dataset[index]


def _collate(items: list) -> Batch:
    images, ids, bad = [], [], []
    for index, item in items:
        if isinstance(item, (tuple, list)):
            item = item[0] if item else None
        if item is None:
            bad.append(index)
            continue
        if not isinstance(item, torch.Tensor):
            raise InvalidTypeError(
                f"dataset item {index} is {type(item).__name__}; expected a tensor "
                f"(preprocessed image), a (tensor, ...) tuple or None")
        images.append(item)
        ids.append(index)
    stacked = torch.stack(images) if images else torch.empty(0)
    return Batch(stacked, torch.tensor(ids, dtype=torch.long), bad, len(items))


def iter_batches(data, batch_size: int, preprocess: Preprocess | None = None, start: int = 0,
                 num_workers: int = 0, pin_memory: bool = False
                 ) -> tuple[Iterator[Batch], int | None]:
    """Batches of ``data`` from dataset item (or DataLoader batch) ``start`` on.

    For an indexable source the ids are dataset indices and ``start`` counts items; for a
    DataLoader the ids are positions in the stream (or, with
    :func:`deconv.samples.collate_skip_bad`, the dataset indices it returns) and ``start``
    counts batches, which are read and dropped (so resuming needs a deterministic order).

    Returns:
        tuple[Iterator[Batch], int | None]: the batches (ids without offset; images in
        page-locked memory with ``pin_memory`` and a CUDA device present) and the number of
        items (indexable) or batches (DataLoader, if sized) still to come, for progress bars.
    """
    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}")
    dataset = as_dataset(data, preprocess)
    if dataset is not None:
        indexed = _Indexed(dataset, start)
        loader = torch.utils.data.DataLoader(indexed, batch_size=batch_size, shuffle=False,
                                             num_workers=num_workers, collate_fn=_collate,
                                             pin_memory=pin_memory and torch.cuda.is_available())
        return iter(loader), len(indexed)
    total = None
    if hasattr(data, "__len__"):
        total = max(0, len(data) - start)
    return _loader_batches(data, start), total


def _loader_batches(loader, start: int) -> Iterator[Batch]:
    ids_from_batch = getattr(loader, "collate_fn", None) is collate_skip_bad
    position = 0
    for number, batch in enumerate(loader):
        if batch is None:  # every file of the batch was bad (collate_skip_bad)
            if number >= start:
                yield Batch(torch.empty(0), torch.empty(0, dtype=torch.long), [], 0)
            continue
        if isinstance(batch, dict):
            images = batch.get("image", batch.get("images"))
            ids = batch.get("id", batch.get("ids"))
        elif isinstance(batch, (tuple, list)):
            images, ids = batch[0], (batch[1] if ids_from_batch else None)
        else:
            images, ids = batch, None
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise InvalidTypeError("each DataLoader batch must be a tensor [B, C, H, W], a tuple "
                                          "(images, ...) or a dict with 'image'")
        if ids is None:
            ids = torch.arange(position, position + len(images))
        position += len(images)
        if number >= start:
            yield Batch(images, torch.as_tensor(ids, dtype=torch.long).reshape(-1), [],
                        len(images))
