"""Writing figures as small PNGs: a 256-colour palette (no dithering) keeps photo sheets small."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

__all__ = ["save_palette_png", "save_figure"]


def save_palette_png(image: Image.Image, path: str | Path, palette: bool = True) -> Path:
    """Save a PIL image as PNG, quantized to 256 colours when ``palette`` (about 3x smaller).

    Args:
        image (PIL.Image.Image): the picture (RGB).
        path (str | Path): the PNG file; its folder is created.
        palette (bool): quantize to a 256-colour palette (median cut, no dithering).

    Returns:
        Path: the file written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if palette:
        image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                               dither=Image.Dither.NONE)
    image.save(path, optimize=True)
    return path


def save_figure(fig, path: str | Path, dpi: int = 100, palette: bool = True) -> None:
    """Save a matplotlib figure as PNG (see :func:`save_palette_png`) and close it.

    Args:
        fig (matplotlib.figure.Figure): the figure (closed afterwards).
        path (str | Path): the PNG file.
        dpi (int): resolution.
        palette (bool): quantize to a 256-colour palette (no dithering).
    """
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    save_palette_png(Image.open(buffer).convert("RGB"), path, palette)
