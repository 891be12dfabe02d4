"""The data an atlas is mined on: parse ``SOURCE`` and fingerprint what it holds.

``SOURCE`` is a folder of images, ``samples`` (square crops of the offline sample photos), or
``fashion-mnist:test`` / ``fashion-mnist:train``; from Python also a ``Dataset`` (items: a
tensor or ``(tensor, label)``) or a tensor ``[N, 3, H, W]``. The fingerprint is a SHA-256 of the
data itself (file bytes, pixels, labels), so a changed data set is never mixed into an atlas.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset

from deconv.errors import InvalidArgumentError, InvalidTypeError, MissingFileError

__all__ = ["AtlasData", "atlas_data", "QUICK_IMAGES"]

#: images a ``--quick`` build mines (the first ones of the source).
QUICK_IMAGES = 300


@dataclass
class AtlasData:
    """A data source ready for the atlas.

    Attributes:
        dataset (Dataset): items ``tensor [3, H, W]`` or ``(tensor, label)`` (model inputs).
        labels (torch.Tensor | None): int64 ``[N]`` label per image, or None (unlabelled).
        class_names (list[str] | None): the name of each label value.
        description (dict): JSON-able: what the data is (kind, source, count, ...).
        fingerprint (str): SHA-256 of the data's contents.
        item_names (list[str] | None): a name per image (file names), for captions.
        source_boxes (Callable | None): for images cut from larger sources (the sample crops),
            ``(ids, boxes) -> (sources, boxes)`` in source coordinates
            (:meth:`deconv.mining.SampleCrops.source_boxes`); the build then keeps per channel
            top-k entries that do not show the same region twice.
    """

    dataset: Dataset
    labels: torch.Tensor | None
    class_names: list[str] | None
    description: dict
    fingerprint: str
    item_names: list[str] | None = field(default=None)
    source_boxes: Callable | None = field(default=None)

    def __len__(self) -> int:
        return len(self.dataset)

    def image(self, index: int) -> torch.Tensor:
        """The model input of image ``index``, ``[3, H, W]``."""
        item = self.dataset[index]
        return item[0] if isinstance(item, (tuple, list)) else item


class _FashionItems(Dataset):
    """Fashion-MNIST uint8 images as model inputs (bilinear resize, normalize, grey as RGB)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, size: int):
        from deconv.datasets import fashion_batch_transform

        self.images, self.labels = images, labels
        self.transform = fashion_batch_transform(size)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(self.images[index:index + 1])[0], int(self.labels[index])


class _TensorItems(Dataset):
    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def _sha(*chunks: bytes) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    return f"{t.dtype}{tuple(t.shape)}".encode() + t.numpy().tobytes()


def atlas_data(source, model=None, limit: int | None = None,
               class_names: list[str] | None = None) -> AtlasData:
    """Turn ``source`` into :class:`AtlasData`.

    Args:
        source (str | Path | Dataset | torch.Tensor): ``"fashion-mnist:test"``,
            ``"fashion-mnist:train"``, ``"samples"``, a folder of images, a Dataset (items:
            tensor or ``(tensor, label)``) or a tensor ``[N, 3, H, W]`` of model inputs.
        model (LoadedModel | nn.Module | None): gives ``preprocess`` and ``input_size`` for
            folders and sample crops (a zoo model).
        limit (int | None): keep the first ``limit`` images.
        class_names (list[str] | None): label names for a labelled Dataset.

    Returns:
        AtlasData: the dataset, its labels and fingerprint.

    Raises:
        InvalidArgumentError: an unknown source string, or a folder/samples without a zoo model.
        MissingFileError: a folder that does not exist.
    """
    if limit is not None and (isinstance(limit, bool) or limit < 1):
        raise InvalidArgumentError(f"limit must be a positive number of images, got {limit!r}")
    if isinstance(source, Path):
        source = str(source)
    if isinstance(source, str):
        return _from_string(source, model, limit)
    if isinstance(source, torch.Tensor):
        if source.ndim != 4 or not source.is_floating_point():
            raise InvalidArgumentError(f"a tensor source must be float [N, 3, H, W] model "
                                       f"inputs, got {tuple(source.shape)} {source.dtype}")
        images = source[:limit] if limit else source
        return AtlasData(_TensorItems(images), None, None,
                         {"kind": "tensor", "source": "tensor", "images": len(images)},
                         _sha(_tensor_bytes(images)))
    if isinstance(source, Dataset):
        dataset = Subset(source, range(min(limit, len(source)))) if limit else source
        return _from_dataset(dataset, class_names)
    raise InvalidTypeError(f"cannot build an atlas from {type(source).__name__}: give a folder, "
                    f"'samples', 'fashion-mnist:test', a Dataset or a tensor [N, 3, H, W]")


def _from_string(source: str, model, limit: int | None) -> AtlasData:
    if source.startswith("fashion-mnist"):
        from deconv.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist

        split = source.partition(":")[2] or "test"
        if split not in ("test", "train"):
            raise InvalidArgumentError(f"unknown Fashion-MNIST split {split!r}: use "
                                       f"fashion-mnist:test or fashion-mnist:train")
        data = load_fashion_mnist(split, limit=limit)
        images, labels = data.tensors
        size = getattr(model, "input_size", 64)
        return AtlasData(_FashionItems(images, labels, size), labels,
                         list(FASHION_MNIST_CLASSES),
                         {"kind": "Fashion-MNIST", "source": f"fashion-mnist:{split}",
                          "split": split, "images": len(images), "input_size": size,
                          "labels": "the ten Fashion-MNIST classes"},
                         _sha(_tensor_bytes(images), _tensor_bytes(labels),
                              str(size).encode()))
    if source != "samples" and not Path(source).is_dir():
        raise MissingFileError(f"data source {source!r} is not 'samples', "
                                f"'fashion-mnist:test|train' or an existing folder of images")
    preprocess = getattr(model, "preprocess", None)
    if preprocess is None:
        raise InvalidArgumentError(f"data source {source!r} needs a zoo model "
                                   f"(deconv.load_model(...)) for its preprocessing; from Python "
                                   f"pass a Dataset of model inputs")
    if source == "samples":
        from deconv.mining.sources import SampleCrops

        size = min(128, int(getattr(model, "input_size", 128)))
        crops = SampleCrops(preprocess, size=size)
        dataset = Subset(crops, range(min(limit, len(crops)))) if limit else crops
        description = crops.describe()
        description.update(kind="sample crops", source="samples", images=len(dataset))
        pixels = [s.image.tobytes() for s in crops.samples]
        return AtlasData(dataset, None, None, description,
                         _sha(repr(sorted(description.items())).encode(), *pixels),
                         [_crop_name(crops.describe(i)) for i in range(len(dataset))],
                         crops.source_boxes)
    folder = Path(source)
    from deconv.samples import ImageFiles

    files = ImageFiles(folder, transform=preprocess)
    if limit:
        files.files = files.files[:limit]
    digest = hashlib.sha256()
    for path in files.files:
        digest.update(str(Path(path).relative_to(folder)).encode())
        digest.update(Path(path).read_bytes())
    digest.update(str(getattr(model, "input_size", "")).encode())
    return AtlasData(files, None, None,
                     {"kind": "image folder", "source": str(folder), "images": len(files)},
                     digest.hexdigest(), [str(Path(p).relative_to(folder)) for p in files.files])


def _crop_name(described: dict) -> str:
    """A sample crop's caption: its photo and box."""
    return f"{described['photo']} {described['box_ltrb']}"


def _from_dataset(dataset: Dataset, class_names: list[str] | None) -> AtlasData:
    digest = hashlib.sha256()
    labels: list[int] = []
    for index in range(len(dataset)):
        item = dataset[index]
        if isinstance(item, (tuple, list)):
            digest.update(_tensor_bytes(item[0]))
            if len(item) > 1:
                labels.append(int(item[1]))
        else:
            digest.update(_tensor_bytes(item))
    label_tensor = torch.tensor(labels) if len(labels) == len(dataset) and labels else None
    if label_tensor is not None:
        digest.update(_tensor_bytes(label_tensor))
    if class_names is None and label_tensor is not None:
        class_names = [str(i) for i in range(int(label_tensor.max()) + 1)]
    return AtlasData(dataset, label_tensor, class_names,
                     {"kind": "dataset", "source": type(dataset).__name__,
                      "images": len(dataset)}, digest.hexdigest())
