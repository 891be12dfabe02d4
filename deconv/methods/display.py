"""One display normalization for every method's maps, so a grid of them is comparable.

Each map is divided by a high percentile of its absolute values (99.5 by default: a few extreme
pixels, common in gradient maps, would otherwise make everything else invisible) and clipped to
``[-1, 1]``. Zero stays zero, so signed maps keep their sign and non-negative maps land in
``[0, 1]``; show both with one diverging colormap centred on 0. An all-zero map stays all zero
(no division by zero).
"""

from __future__ import annotations

import torch

__all__ = ["scale_for_display"]


def scale_for_display(maps: torch.Tensor, percentile: float = 99.5) -> torch.Tensor:
    """Scale each map ``[..., H, W]`` by its ``percentile`` of ``|value|`` and clip to [-1, 1].

    Args:
        maps (torch.Tensor): one map ``[H, W]`` or a batch ``[N, H, W]``.
        percentile (float): in ``(0, 100]``; 100 scales by the maximum.

    Returns:
        torch.Tensor: float maps of the same shape in ``[-1, 1]``.

    Raises:
        ValueError: percentile out of range or a map with fewer than 2 dimensions.
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    if maps.dim() < 2:
        raise ValueError(f"maps must be [H, W] or [N, H, W], got shape {tuple(maps.shape)}")
    flat = maps.detach().float().reshape(-1, maps.shape[-2] * maps.shape[-1])
    scale = torch.quantile(flat.abs(), percentile / 100, dim=1, keepdim=True)
    scale = torch.where(scale > 0, scale, flat.abs().amax(dim=1, keepdim=True))
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (flat / scale).clamp(-1, 1).reshape(maps.shape)
