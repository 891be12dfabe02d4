"""Turning projections into pictures: scaling for display and cropping to a receptive field.

A projection is a signed image in the model's input space. For display it is mapped to [0, 1]
either per image (each picture uses its full range, so faint projections look as strong as
strong ones) or on one shared scale across a set (so strengths can be compared, e.g. the nine
projections of a Fig. 2 cell). An all-zero projection (a dead unit) becomes flat grey (or
black for ``"minmax"``), never NaN.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["normalize_for_display", "to_display_image", "crop_to_receptive_field"]

_SCALES = ("image", "shared")
_METHODS = ("symmetric", "minmax")


def normalize_for_display(projections: torch.Tensor, scale: str = "image",
                          method: str = "symmetric", eps: float = 1e-12,
                          percentile: float | None = None) -> torch.Tensor:
    """Map projections to [0, 1] for display.

    Args:
        projections (torch.Tensor): [K, C, H, W] (or one [C, H, W]).
        scale (str): ``"image"``: each projection on its own scale; ``"shared"``: one scale for
            the whole set.
        method (str): ``"symmetric"``: zero maps to 0.5 grey and ``+-max|x|`` to 1 / 0 (signs
            stay comparable); ``"minmax"``: the minimum maps to 0 and the maximum to 1.
        eps (float): ranges at or below this count as empty (the map becomes 0.5 or 0).
        percentile (float | None): ``"symmetric"`` only: use this percentile of ``|x|`` (e.g.
            99.5) instead of the maximum as the full-scale value, clipping the few strongest
            pixels so faint structure shows; None uses the maximum.

    Returns:
        torch.Tensor: same shape, values in [0, 1], no NaN even for all-zero maps.

    Raises:
        ValueError: unknown ``scale`` or ``method``, or a tensor that is not 3-D or 4-D.
    """
    if scale not in _SCALES:
        raise ValueError(f"scale must be one of {_SCALES}, got {scale!r}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if projections.dim() not in (3, 4):
        raise ValueError(f"projections must be [K, C, H, W] or [C, H, W], got shape "
                         f"{tuple(projections.shape)}")
    single = projections.dim() == 3
    x = projections.detach().unsqueeze(0) if single else projections.detach()
    x = torch.nan_to_num(x.float() if x.dtype in (torch.float16, torch.bfloat16) else x)
    dims = (1, 2, 3) if scale == "image" else (0, 1, 2, 3)
    if percentile is not None and not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    if method == "symmetric":
        peak = x.abs().amax(dim=dims, keepdim=True)
        if percentile is not None:
            flat = x.abs().reshape(x.shape[0], -1) if scale == "image" else x.abs().reshape(1, -1)
            q = torch.quantile(flat.double(), percentile / 100.0, dim=1).to(x.dtype)
            q = q.reshape(-1, 1, 1, 1)
            peak = torch.where(q > eps, q, peak)
        safe = torch.where(peak > eps, peak, torch.ones_like(peak))
        out = torch.where(peak > eps, 0.5 + x / (2 * safe), torch.full_like(x, 0.5))
    else:
        low = x.amin(dim=dims, keepdim=True)
        span = x.amax(dim=dims, keepdim=True) - low
        safe = torch.where(span > eps, span, torch.ones_like(span))
        out = torch.where(span > eps, (x - low) / safe, torch.zeros_like(x))
    out = out.clamp(0, 1)
    return out[0] if single else out


def to_display_image(image: torch.Tensor) -> np.ndarray:
    """A [C, H, W] tensor in [0, 1] as an ``H x W x C`` (or ``H x W`` for C = 1) numpy array."""
    if image.dim() != 3:
        raise ValueError(f"expected one image [C, H, W], got shape {tuple(image.shape)}")
    array = image.detach().cpu().float().permute(1, 2, 0).numpy()
    return array[..., 0] if array.shape[-1] == 1 else array


def crop_to_receptive_field(image: torch.Tensor, field, y: int, x: int, pad: bool = False,
                            fill: float = 0.0) -> torch.Tensor:
    """Crop an image (or a projection) to the receptive field of unit ``(y, x)``.

    Args:
        image (torch.Tensor): [..., H, W] in the model's input space.
        field (ReceptiveField): from :func:`deconv.receptive_field.receptive_field` for the
            unit's layer and this input size (anything with ``box(y, x, clip)`` and ``size``).
        y (int): the unit's row in the layer's output.
        x (int): the unit's column.
        pad (bool): False: the part of the field inside the image (smaller at the borders).
            True: the full field, its part outside the image filled with ``fill``, so crops of
            one layer all have the same size and the unit sits at their centre.
        fill (float): value of the padding.

    Returns:
        torch.Tensor: [..., h, w].

    Raises:
        ValueError: the field was computed for another input size.
    """
    height, width = image.shape[-2:]
    expected = tuple(getattr(field, "input_size", (height, width)))
    if expected != (height, width):
        raise ValueError(f"the receptive field was computed for input size {expected}, but the "
                         f"image is {(height, width)}; recompute it with that input_size")
    top, left, bottom, right = field.box(int(y), int(x), clip=True)
    crop = image[..., top:bottom, left:right]
    if not pad:
        return crop
    t0, l0, b0, r0 = field.box(int(y), int(x), clip=False)
    out = image.new_full((*image.shape[:-2], b0 - t0, r0 - l0), fill)
    out[..., top - t0:bottom - t0, left - l0:right - l0] = crop
    return out
