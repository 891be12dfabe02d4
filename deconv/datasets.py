"""Labelled datasets for training: Fashion-MNIST (idx files, offline) and any ImageFolder tree.

Fashion-MNIST (Xiao et al. 2017, MIT licence) is read from the idx files of Debian's
``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist/*.gz``), from a
torchvision download folder (``<root>/FashionMNIST/raw``), or downloaded by torchvision when
``download=True`` is asked for explicitly (nothing is downloaded otherwise). Images stay
``uint8 [N, 1, 28, 28]`` in memory (47 MB for the training set); the model input is made per
batch by :func:`fashion_batch_transform` (upsample to the model's side, repeat the grey channel
over RGB, normalize, optional horizontal flip), which is far cheaper than storing 64 px copies.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

from deconv.errors import FashionMNISTNotFoundError, InvalidArgumentError, MissingFileError

__all__ = ["FASHION_MNIST_CLASSES", "FashionMNISTNotFoundError", "read_idx",
           "fashion_mnist_dirs", "load_fashion_mnist", "fashion_batch_transform",
           "image_folder_dataset"]

#: Label names of Fashion-MNIST, index = label.
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"



def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (LeCun's MNIST format), gzipped or not.

    Format: two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), a byte with the number of dimensions, one big-endian int32
    per dimension, then the data in C order, big-endian.

    Args:
        path (str | Path): the file (``.gz`` is decompressed).

    Returns:
        np.ndarray: the array, in native byte order.

    Raises:
        ValueError: the header is not an idx header or the data size does not match it.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise InvalidArgumentError(f"{path} is not an idx file (bad magic number {raw[:4]!r})")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">i4"))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise InvalidArgumentError(
            f"{path}: header says shape {shape} ({expected} bytes of data) but the "
            f"file holds {len(raw) - header} bytes; the file is truncated or corrupt")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def fashion_mnist_dirs(root: str | Path | None = None) -> list[Path]:
    """Folders searched for the idx files, in order.

    ``root`` and ``root/FashionMNIST/raw`` (torchvision's layout) when given, then
    ``$DECONV_FASHION_MNIST``, then Debian's ``/usr/share/datasets/fashion-mnist``.
    """
    dirs = []
    for base in (root, os.environ.get("DECONV_FASHION_MNIST")):
        if base:
            dirs += [Path(base), Path(base) / "FashionMNIST" / "raw"]
    dirs.append(Path(_DEBIAN_DIR))
    return dirs


def _find(name: str, dirs: Sequence[Path]) -> Path | None:
    for d in dirs:
        for candidate in (d / f"{name}.gz", d / name):
            if candidate.is_file():
                return candidate
    return None


def load_fashion_mnist(split: str = "train", root: str | Path | None = None,
                       download: bool = False, limit: int | None = None) -> TensorDataset:
    """Fashion-MNIST as an in-memory dataset of ``(uint8 image [1, 28, 28], int64 label)``.

    Args:
        split (str): ``"train"`` (60,000 images) or ``"test"`` (10,000).
        root (str | Path | None): a folder with the idx files (see :func:`fashion_mnist_dirs`).
        download (bool): if the files are nowhere, let torchvision download them into ``root``
            (needs a network; off by default: nothing is downloaded unless asked).
        limit (int | None): keep only the first ``limit`` images (smoke runs, tests).

    Returns:
        TensorDataset: tensors ``images`` uint8 ``[N, 1, 28, 28]`` and ``labels`` int64 ``[N]``.

    Raises:
        ValueError: unknown split. FashionMNISTNotFoundError: no files and no download asked.
    """
    if split not in _FILES:
        raise InvalidArgumentError(f"split must be 'train' or 'test', got {split!r}")
    dirs = fashion_mnist_dirs(root)
    image_name, label_name = _FILES[split]
    images, labels = _find(image_name, dirs), _find(label_name, dirs)
    if (images is None or labels is None) and download:
        if root is None:
            raise InvalidArgumentError("download=True needs a root folder to download into")
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(root), train=split == "train", download=True)
        images, labels = _find(image_name, dirs), _find(label_name, dirs)
    if images is None or labels is None:
        raise FashionMNISTNotFoundError(
            f"Fashion-MNIST {split} files ({image_name}[.gz], {label_name}[.gz]) not found in "
            f"{[str(d) for d in dirs]}. Install them with `apt-get install dataset-fashion-mnist`"
            f" (or `bash scripts/install_fashion_mnist.sh`), point $DECONV_FASHION_MNIST at a "
            f"folder holding them, or pass download=True with a root when online.")
    x = torch.from_numpy(read_idx(images)).unsqueeze(1)
    y = torch.from_numpy(read_idx(labels).astype(np.int64))
    if x.shape[0] != y.shape[0]:
        raise InvalidArgumentError(
            f"{images} has {x.shape[0]} images but {labels} has {y.shape[0]} labels")
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return TensorDataset(x, y)


def fashion_batch_transform(size: int = 64, mean: float = 0.2860, std: float = 0.3530,
                            channels: int = 3, flip: bool = False
                            ) -> Callable[[torch.Tensor], torch.Tensor]:
    """Batch transform: uint8 ``[N, 1, 28, 28]`` -> normalized float ``[N, channels, size, size]``.

    Bilinear upsampling (``align_corners=False``), then ``(x / 255 - mean) / std``, the grey
    channel repeated ``channels`` times; with ``flip`` each image is mirrored left-right with
    probability 1/2 using torch's global generator (seeded by the training loop).

    Args:
        size (int): output side (the model's ``input_size``).
        mean (float): mean of the pixels in [0, 1] (Fashion-MNIST training set: 0.2860).
        std (float): their std (0.3530).
        channels (int): output channels (3: the zoo's RGB contract).
        flip (bool): random horizontal flips (training-time augmentation).

    Returns:
        Callable[[torch.Tensor], torch.Tensor]: the transform (runs on the batch's device).
    """
    if size < 1 or channels < 1:
        raise InvalidArgumentError(f"size and channels must be positive, got {size} and {channels}")

    def transform(batch: torch.Tensor) -> torch.Tensor:
        x = batch.float().div_(255.0)
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = (x - mean) / std
        if flip:
            mirror = torch.rand(x.shape[0]) < 0.5
            x[mirror] = x[mirror].flip(-1)
        return x.expand(-1, channels, -1, -1).contiguous() if x.shape[1] == 1 else x

    return transform


def image_folder_dataset(root: str | Path, size: int, mean: Sequence[float],
                         std: Sequence[float], train: bool = True) -> Dataset:
    """A labelled ImageFolder tree (``root/<class>/<image>``) as model-ready tensors.

    Training: random resized crop to ``size`` and horizontal flips; evaluation: resize the short
    side to ``size * 8 / 7`` and centre-crop ``size`` (the usual 256/224 ratio).

    Args:
        root (str | Path): the folder.
        size (int): the model's input side.
        mean (Sequence[float]): per-channel mean of the normalization.
        std (Sequence[float]): per-channel std.
        train (bool): augmentation (True) or deterministic centre crops (False).

    Returns:
        torchvision.datasets.ImageFolder: items ``(float [3, size, size], label)``; class names
        in ``.classes``.
    """
    from torchvision import datasets, transforms

    if not Path(root).is_dir():
        raise MissingFileError(f"image folder {root} does not exist or is not a directory")
    if train:
        steps = [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip()]
    else:
        steps = [transforms.Resize(round(size * 8 / 7)), transforms.CenterCrop(size)]
    steps += [transforms.ToTensor(), transforms.Normalize(list(mean), list(std))]
    return datasets.ImageFolder(str(root), transform=transforms.Compose(steps))
