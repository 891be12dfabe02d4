"""The atlas's picture files: JPEG strips of patches and projections, optima, filters.

Every file is written once, atomically (a temporary name, then ``os.replace``), so an
interrupted build never leaves half a picture behind.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deconv.atlas.workdir import atomic_write
from deconv.plots.scaling import normalize_for_display
from deconv.plots.topk_grids import fit_tile as fit  # the Fig. 2 grids' resize, one rule

__all__ = ["fit", "to_pil", "save_jpeg", "strip", "filter_image", "JPEG_QUALITY"]

JPEG_QUALITY = 85


def to_pil(image: torch.Tensor, side: int | None = None) -> Image.Image:
    """``[3, H, W]`` (or ``[1, H, W]``) pixels in [0, 1] as an RGB PIL image, resized to
    ``side`` (nearest when enlarging, so small fields keep their pixels)."""
    array = image.detach().cpu().float().numpy()  # numpy: no thread start-up per tiny tile
    array = np.rint(np.clip(array, 0, 1) * 255).astype(np.uint8)
    if array.shape[0] == 1:
        array = np.repeat(array, 3, axis=0)
    pil = Image.fromarray(np.ascontiguousarray(array.transpose(1, 2, 0)), "RGB")
    if side is not None and pil.size != (side, side):
        enlarge = max(pil.size) < side
        pil = pil.resize((side, side), Image.NEAREST if enlarge else Image.BILINEAR)
    return pil


def save_jpeg(image: Image.Image, path: str | Path, quality: int = JPEG_QUALITY) -> Path:
    """Write ``image`` as a JPEG at ``path`` atomically; returns the path."""
    return atomic_write(path, lambda tmp: image.save(tmp, format="JPEG", quality=quality,
                                                     optimize=True))


def strip(tiles: torch.Tensor, side: int, gap: int = 2) -> Image.Image:
    """Tiles ``[n, 3, h, w]`` in [0, 1], each resized to ``side``, in one row on white."""
    n = tiles.shape[0]
    canvas = Image.new("RGB", (n * side + (n - 1) * gap, side), "white")
    for i in range(n):
        canvas.paste(to_pil(tiles[i], side), (i * (side + gap), 0))
    return canvas


def filter_image(weight: torch.Tensor, side: int) -> Image.Image:
    """A first-layer filter ``[3, kh, kw]`` as a picture: zero is grey, ``+-max|w|`` white/black
    (each filter on its own scale, as :func:`deconv.filter_grid`)."""
    if weight.shape[0] != 3:
        weight = weight.mean(0, keepdim=True)
    return to_pil(normalize_for_display(weight.detach().float()), side)
