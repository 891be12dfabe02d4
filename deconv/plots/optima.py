"""Drawing optima: single PNGs, the optima-beside-top-9 sheet and the regularization sheet.

Drawn with PIL directly (no matplotlib) and saved with a 256-colour palette, so sheets of
photo patches stay at a few hundred KB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from deconv.errors import InvalidArgumentError
from deconv.plots.png import save_palette_png

__all__ = ["save_image", "OptimaRow", "render_optima_sheet", "render_regularization_sheet"]


def _to_pil(image: torch.Tensor, side: int | None = None, smooth: bool = False) -> Image.Image:
    """``[3, h, w]`` in [0, 1] -> RGB PIL image, resized to ``side`` (enlarging: nearest, so
    pixels stay visible, or bilinear with ``smooth``; shrinking: area averaging)."""
    image = image.detach().float().clamp(0, 1)
    if side is not None and tuple(image.shape[-2:]) != (side, side):
        if max(image.shape[-2:]) > side:
            image = F.interpolate(image[None], size=(side, side), mode="area")[0]
        elif smooth:
            image = F.interpolate(image[None], size=(side, side), mode="bilinear",
                                  align_corners=False)[0].clamp(0, 1)
        else:
            image = F.interpolate(image[None], size=(side, side), mode="nearest")[0]
    return Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def save_image(image: torch.Tensor, path: str | Path, side: int | None = None,
               smooth: bool = True) -> Path:
    """Write one image ``[3, h, w]`` in [0, 1] as a PNG (optionally resized to ``side``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _to_pil(image, side, smooth).save(path, optimize=True)
    return path


def _mosaic(tiles: torch.Tensor, side: int, columns: int = 3, gap: int = 2) -> Image.Image:
    """``[n, 3, h, w]`` tiles in a ``columns``-wide grid whose total width is ``side``."""
    tile = (side - (columns - 1) * gap) // columns
    rows = int(np.ceil(len(tiles) / columns))
    canvas = Image.new("RGB", (side, rows * (tile + gap) - gap), "white")
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        canvas.paste(_to_pil(t, tile), (c * (tile + gap), r * (tile + gap)))
    return canvas


@dataclass
class OptimaRow:
    """One feature map on the sheet.

    Attributes:
        label (list[str]): caption lines (layer, channel, values).
        positive (torch.Tensor): ``[3, h, w]`` positive optimum.
        negative (torch.Tensor): ``[3, h, w]`` negative optimum.
        projections (torch.Tensor | None): ``[9, 3, s, s]`` deconvnet projections of the top-9.
        patches (torch.Tensor | None): ``[9, 3, s, s]`` the top-9 image patches.
    """

    label: list[str]
    positive: torch.Tensor
    negative: torch.Tensor
    projections: torch.Tensor | None = None
    patches: torch.Tensor | None = None


def render_optima_sheet(rows: Sequence[OptimaRow], path: str | Path, title: str = "",
                        side: int = 144, label_width: int = 96, gap: int = 8) -> Path:
    """One PNG: per feature map, positive optimum | negative optimum | top-9 projections |
    top-9 patches (the last two left blank, with a note, when no mining result is given)."""
    if not rows:
        raise InvalidArgumentError("no rows to draw")
    heads = ["positive optimum", "negative optimum", "top-9 projections", "top-9 patches"]
    top = 34 if title else 18
    width = label_width + 4 * (side + gap)
    canvas = Image.new("RGB", (width, top + len(rows) * (side + gap)), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 2), title, fill="black")
    for j, head in enumerate(heads):
        draw.text((label_width + j * (side + gap) + 2, top - 14), head, fill="black")
    for i, row in enumerate(rows):
        y = top + i * (side + gap)
        for k, line in enumerate(row.label):
            draw.text((4, y + 4 + 14 * k), line, fill="black")
        canvas.paste(_to_pil(row.positive, side, smooth=True), (label_width, y))
        canvas.paste(_to_pil(row.negative, side, smooth=True), (label_width + side + gap, y))
        for j, tiles in ((2, row.projections), (3, row.patches)):
            x = label_width + j * (side + gap)
            if tiles is None or len(tiles) == 0:
                draw.rectangle((x, y, x + side - 1, y + side - 1), outline="grey")
                draw.text((x + 6, y + side // 2 - 6), "no mining result", fill="grey")
            else:
                canvas.paste(_mosaic(tiles, side), (x, y))
    return save_palette_png(canvas, path)


def render_regularization_sheet(images: Sequence[torch.Tensor], captions: Sequence[list[str]],
                                path: str | Path, title: str = "", side: int = 160,
                                gap: int = 8) -> Path:
    """One PNG: the same feature map optimized under each setting, left to right."""
    if len(images) != len(captions) or not images:
        raise InvalidArgumentError(
            "give one caption (a list of lines) per image, at least one image")
    lines = max(len(c) for c in captions)
    top = 20 if title else 4
    canvas = Image.new("RGB", (len(images) * (side + gap) + gap,
                               top + side + 8 + 14 * lines), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((gap, 3), title, fill="black")
    for j, (image, caption) in enumerate(zip(images, captions)):
        x = gap + j * (side + gap)
        canvas.paste(_to_pil(image, side, smooth=True), (x, top))
        for k, line in enumerate(caption):
            draw.text((x, top + side + 4 + 14 * k), line, fill="black")
    return save_palette_png(canvas, path)
