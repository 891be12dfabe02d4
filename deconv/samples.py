"""Offline sample photos and user image folders that never crash on a bad file.

The sample photos ship inside installed packages (scikit-image, matplotlib), so they work with
no network. Their provenance and licences are recorded with each image.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from deconv.errors import (
    CorruptImageError,
    InvalidArgumentError,
    InvalidTypeError,
    MissingFileError,
    UnknownNameError,
)

__all__ = ["SampleImage", "sample_images", "SAMPLE_NAMES", "open_image", "to_pil",
           "CorruptImageError", "ImageFiles", "list_image_files", "collate_skip_bad"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}



@dataclass(frozen=True)
class SampleImage:
    """One offline photo.

    Attributes:
        name (str): short name (``"coffee"``).
        image (PIL.Image.Image): the RGB picture.
        source (str): where it comes from.
        licence (str): its licence.
    """

    name: str
    image: Image.Image
    source: str
    licence: str


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


def _grace_hopper() -> np.ndarray:
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


# name -> (loader, source, licence); RGB photos first, then grey textures (for mining crops).
_SAMPLES: dict[str, tuple[Callable[[], np.ndarray], str, str]] = {
    "astronaut": (_skimage("astronaut"), "scikit-image: Eileen Collins, NASA Great Images",
                  "public domain"),
    "chelsea": (_skimage("chelsea"), "scikit-image: Chelsea the cat, Stefan van der Walt", "CC0"),
    "coffee": (_skimage("coffee"), "scikit-image: coffee cup, Rachel Michetti (Pikolo Espresso)",
               "CC0"),
    "rocket": (_skimage("rocket"), "scikit-image: DSCOVR launch on Falcon 9, SpaceX",
               "public domain"),
    "grace_hopper": (_grace_hopper, "matplotlib sample data: Rear Admiral Grace Hopper, US Navy",
                     "public domain"),
    "hubble_deep_field": (_skimage("hubble_deep_field"), "scikit-image: Hubble Deep Field, NASA",
                          "public domain"),
    "camera": (_skimage("camera"), "scikit-image: cameraman, Lav Varshney", "CC0"),
    "brick": (_skimage("brick"), "scikit-image: CC0Textures Bricks25", "CC0"),
    "grass": (_skimage("grass"), "scikit-image: CC0Textures grass", "CC0"),
    "gravel": (_skimage("gravel"), "scikit-image: CC0Textures Gravel04", "CC0"),
}

#: The default photos (objects an ImageNet classifier knows), in a fixed order.
SAMPLE_NAMES: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "rocket", "grace_hopper")


def sample_images(names: Sequence[str] | None = None) -> list[SampleImage]:
    """Return offline sample photos as RGB PIL images with provenance and licence.

    Args:
        names (Sequence[str] | None): which ones; :data:`SAMPLE_NAMES` by default. All available:
            ``"all"`` or the keys listed in the error for an unknown name.

    Returns:
        list[SampleImage]: the photos, in the order asked.
    """
    if names is None:
        names = SAMPLE_NAMES
    elif names == "all":
        names = tuple(_SAMPLES)
    out = []
    for name in names:
        if name not in _SAMPLES:
            raise UnknownNameError(f"unknown sample image {name!r}; available: {list(_SAMPLES)}")
        loader, source, licence = _SAMPLES[name]
        array = loader()
        if isinstance(array, tuple):  # stereo pairs: keep the left view
            array = array[0]
        out.append(SampleImage(name, to_pil(array), source, licence))
    return out


def to_pil(image: Image.Image | np.ndarray | str | Path) -> Image.Image:
    """Convert a PIL image, an HxW / HxWx3 / HxWx4 array or a file path to an RGB PIL image.

    Raises:
        CorruptImageError: a path that is not a readable image.
        TypeError: anything else.
    """
    if isinstance(image, (str, Path)):
        return open_image(image)
    if isinstance(image, Image.Image):
        return _to_rgb(image)
    if isinstance(image, np.ndarray):
        array = image
        if array.dtype != np.uint8:
            if not np.isfinite(array).all():
                raise InvalidArgumentError("image array contains NaN or inf; clean it before use")
            scale = 255.0 if array.max() <= 1.0 else 1.0
            array = np.clip(array * scale, 0, 255).astype(np.uint8)
        if array.ndim == 2:
            array = np.stack([array] * 3, axis=-1)
        if array.ndim != 3 or array.shape[-1] not in (3, 4):
            raise InvalidArgumentError(
                f"image array must be HxW, HxWx3 or HxWx4, got shape {array.shape}")
        return Image.fromarray(array[..., :3])
    raise InvalidTypeError(
        f"expected a PIL image, a numpy array or a path, got {type(image).__name__}")


def open_image(path: str | Path) -> Image.Image:
    """Open an image file as RGB, fully decoded.

    High bit depths are scaled, not clipped: 16-bit images (PIL modes ``I;16*`` and ``I``, as
    16-bit PNGs and TIFFs load) map 0..65535 to 0..255, and float images (``F``) in [0, 1] map
    to 0..255. (PIL's own ``convert("RGB")`` clips them, so a 16-bit PNG came out almost white.)

    Raises:
        CorruptImageError: the file is missing, not an image, or truncated; names the file.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            return _to_rgb(im)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise CorruptImageError(f"cannot read image {path}: {exc}") from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB of a PIL image, scaling 16-bit and float modes to 8 bits instead of clipping."""
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float64)
        if image.mode == "F":
            peak = 1.0 if np.nanmax(array, initial=0.0) <= 1.0 else 255.0
        else:
            peak = 65535.0 if image.mode.startswith("I;16") or array.max(initial=0) > 255 \
                else 255.0
        array = np.clip(np.nan_to_num(array) * (255.0 / peak), 0, 255).round().astype(np.uint8)
        return Image.fromarray(np.stack([array] * 3, axis=-1))
    return image.convert("RGB")


def list_image_files(root: str | Path) -> list[Path]:
    """Image files under ``root`` (recursively, sorted), by suffix; a plain folder or ImageFolder.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"image folder {root} does not exist or is not a directory")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class ImageFiles(torch.utils.data.Dataset):
    """A dataset of image files (a plain folder, an ImageFolder tree, or a list of paths).

    Item ``i`` is ``(transform(image), i)``, or ``None`` when file ``i`` cannot be decoded: a
    warning names the file and the index is recorded in ``bad``. Use :func:`collate_skip_bad`
    in the DataLoader so a bad file never stops a run.

    Args:
        files (str | Path | Sequence[str | Path]): a folder, or the file paths.
        transform (Callable[[PIL.Image.Image], torch.Tensor]): e.g. ``LoadedModel.preprocess``.
    """

    def __init__(self, files: str | Path | Sequence[str | Path],
                 transform: Callable[[Image.Image], torch.Tensor]):
        if isinstance(files, (str, Path)):
            self.files = list_image_files(files)
        else:
            self.files = [Path(f) for f in files]
        self.transform = transform
        self.bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        try:
            image = open_image(self.files[index])
        except CorruptImageError as exc:
            warnings.warn(f"skipping {exc}", stacklevel=2)
            self.bad.add(index)
            return None
        return self.transform(image), index


def collate_skip_bad(batch: list) -> tuple[torch.Tensor, torch.Tensor] | None:
    """DataLoader collate that drops ``None`` items (bad files); ``None`` if nothing is left."""
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    images, ids = zip(*batch)
    return torch.stack(images), torch.tensor(ids, dtype=torch.long)
