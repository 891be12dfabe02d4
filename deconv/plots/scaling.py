"""Display scaling: one robust full-scale value for every picture of signed maps.

A projection or an attribution map is signed, and a few extreme pixels (common in gradient
maps and deconvnet projections) would make everything else invisible if the maximum set the
scale. So every figure of the package divides by :func:`robust_peak`: the ``percentile``
(99.5 by default) of ``|value|``, falling back to the maximum where that percentile is 0.
Two presentations are built on it:

* :func:`scale_for_display`: each map divided by its peak and clipped to ``[-1, 1]``; zero stays
  zero (show it with a diverging colormap centred on 0);
* :func:`normalize_for_display`: pictures in ``[0, 1]`` with zero at 0.5 grey (``"symmetric"``)
  or a min-max stretch (``"minmax"``), per image or on one shared scale across a set.

An all-zero map (a dead unit) becomes flat 0 (or 0.5 grey / 0 for ``"minmax"``), never NaN.
"""

from __future__ import annotations

import numpy as np
import torch

from deconv.errors import InvalidArgumentError
from deconv.validation import check_finite

__all__ = ["DISPLAY_PERCENTILE", "robust_peak", "scale_for_display", "normalize_for_display",
           "to_display_image"]

#: The percentile of ``|value|`` every figure of the package uses as its full scale.
DISPLAY_PERCENTILE = 99.5

_SCALES = ("image", "shared")
_METHODS = ("symmetric", "minmax")


def _check_percentile(percentile: float) -> None:
    if not 0 < percentile <= 100:
        raise InvalidArgumentError(f"percentile must be in (0, 100], got {percentile}")


def robust_peak(values: torch.Tensor, percentile: float = DISPLAY_PERCENTILE,
                eps: float = 0.0) -> torch.Tensor:
    """The full-scale value of each row: the ``percentile`` of ``|value|``, else the maximum.

    Args:
        values (torch.Tensor): ``[G, n]``: ``G`` groups (one per picture, or one for a shared
            scale) of ``n`` values each.
        percentile (float): in ``(0, 100]``; 100 is the maximum of ``|value|``.
        eps (float): a percentile at or below this falls back to the maximum (so a map that is
            zero almost everywhere keeps its few non-zero pixels visible).

    Returns:
        torch.Tensor: ``[G]`` non-negative scales, dtype of ``values`` (computed in float64); 0
        only for an all-zero (or all-below-``eps``) group.

    Raises:
        ValueError: percentile out of range or ``values`` not 2-D.
    """
    _check_percentile(percentile)
    if values.dim() != 2:
        raise InvalidArgumentError(f"values must be [groups, n], got shape {tuple(values.shape)}")
    magnitude = values.detach().abs().double()
    if magnitude.shape[1] == 0:
        return torch.zeros(magnitude.shape[0], dtype=values.dtype)
    peak = magnitude.amax(dim=1)
    if percentile < 100:
        q = torch.quantile(magnitude, percentile / 100.0, dim=1)
        peak = torch.where(q > eps, q, peak)
    return peak.to(values.dtype if values.is_floating_point() else torch.float64)


def scale_for_display(maps: torch.Tensor, percentile: float = DISPLAY_PERCENTILE) -> torch.Tensor:
    """Divide each map ``[..., H, W]`` by its :func:`robust_peak` and clip to ``[-1, 1]``.

    Args:
        maps (torch.Tensor): one map ``[H, W]`` or a batch ``[N, H, W]``.
        percentile (float): in ``(0, 100]``; 100 scales by the maximum.

    Returns:
        torch.Tensor: float maps of the same shape in ``[-1, 1]``; an all-zero map stays zero.

    Raises:
        ValueError: percentile out of range or a map with fewer than 2 dimensions.
    """
    _check_percentile(percentile)
    if maps.dim() < 2:
        raise InvalidArgumentError(
            f"maps must be [H, W] or [N, H, W], got shape {tuple(maps.shape)}")
    flat = maps.detach().float().reshape(-1, maps.shape[-2] * maps.shape[-1])
    scale = robust_peak(flat, percentile)[:, None]
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (flat / scale).clamp(-1, 1).reshape(maps.shape)


def normalize_for_display(projections: torch.Tensor, scale: str = "image",
                          method: str = "symmetric", eps: float = 1e-12,
                          percentile: float | None = None) -> torch.Tensor:
    """Map projections to [0, 1] for display.

    Args:
        projections (torch.Tensor): [K, C, H, W] (or one [C, H, W]).
        scale (str): ``"image"``: each projection on its own scale; ``"shared"``: one scale for
            the whole set.
        method (str): ``"symmetric"``: zero maps to 0.5 grey and ``+-peak`` to 1 / 0 (signs
            stay comparable); ``"minmax"``: the minimum maps to 0 and the maximum to 1.
        eps (float): ranges at or below this count as empty (the map becomes 0.5 or 0).
        percentile (float | None): ``"symmetric"`` only: the full-scale value is this
            percentile of ``|x|`` (:func:`robust_peak`, e.g. :data:`DISPLAY_PERCENTILE`),
            clipping the few strongest pixels so faint structure shows; None uses the maximum.

    Returns:
        torch.Tensor: same shape, values in [0, 1], no NaN even for all-zero maps.

    Raises:
        ValueError: unknown ``scale`` or ``method``, or a tensor that is not 3-D or 4-D.
        InvalidImageError: NaN or Inf values (a ``ValueError`` too).
    """
    if scale not in _SCALES:
        raise InvalidArgumentError(f"scale must be one of {_SCALES}, got {scale!r}")
    if method not in _METHODS:
        raise InvalidArgumentError(f"method must be one of {_METHODS}, got {method!r}")
    if projections.dim() not in (3, 4):
        raise InvalidArgumentError(f"projections must be [K, C, H, W] or [C, H, W], got shape "
                                   f"{tuple(projections.shape)}")
    if percentile is not None:
        _check_percentile(percentile)
    check_finite("projections", projections)  # NaN would be drawn as flat grey, unnoticed
    single = projections.dim() == 3
    x = projections.detach().unsqueeze(0) if single else projections.detach()
    x = torch.nan_to_num(x.float() if x.dtype in (torch.float16, torch.bfloat16) else x)
    dims = (1, 2, 3) if scale == "image" else (0, 1, 2, 3)
    if method == "symmetric":
        groups = x.reshape(x.shape[0], -1) if scale == "image" else x.reshape(1, -1)
        peak = robust_peak(groups, percentile or 100.0, eps).reshape(-1, 1, 1, 1)
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
        raise InvalidArgumentError(f"expected one image [C, H, W], got shape {tuple(image.shape)}")
    array = image.detach().cpu().float().permute(1, 2, 0).numpy()
    return array[..., 0] if array.shape[-1] == 1 else array
