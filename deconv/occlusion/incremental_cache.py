"""What incremental occlusion keeps of the unoccluded image: each spatial stage's padded input.

A spatial stage (convolution or pooling) reads its input through a pre-padded copy: the layer's
own padding is already in the tensor (zeros for convolutions, -inf for max-pools), so a window
of it can be run with padding 0. :class:`SpatialCache` holds that copy, channels last and
flattened to ``[rows * padded_width, C]``, either whole (``banded=False``) or as a **row band**
``[lo, lo + rows)`` of it (``banded=True``).

Row bands keep the cache of the large early layers small: occluder positions are processed top
to bottom, so each large early layer only ever needs the rows around the current
occluder row (the rows its windows read, plus the rows the next banded layer needs to compute
its own new rows). :func:`band_update` says which rows to keep and which to compute when the
band moves down; rows are computed once each as long as requests move down monotonically
(a request above the band recomputes it, which is slower but still exact).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from deconv.occlusion.incremental_plan import SpatialGeometry

__all__ = ["SpatialCache", "band_update", "source_rows"]


@dataclass
class SpatialCache:
    """A spatial stage's pre-padded input (whole or a row band) and its geometry.

    Attributes:
        padded (torch.Tensor): ``[rows * padded_width, C]``: padded rows ``[lo, lo + rows)``.
        padded_width (int): width of the padded input.
        pad_top (int): padding rows above the input.
        pad_left (int): padding columns left of the input.
        in_size (tuple[int, int]): the unpadded input ``(H, W)``.
        out_size (tuple[int, int]): the stage's output ``(Ho, Wo)``.
        divisor (torch.Tensor | None): avg-pool divisor per output pixel ``[Ho * Wo]``.
        banded (bool): only a row band is kept (and computed on demand).
        lo (int): first padded row held.
    """

    padded: torch.Tensor
    padded_width: int
    pad_top: int
    pad_left: int
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    divisor: torch.Tensor | None
    banded: bool = False
    lo: int = 0

    @property
    def rows(self) -> int:
        """int: number of padded rows held."""
        return self.padded.shape[0] // self.padded_width

    @property
    def hi(self) -> int:
        """int: one past the last padded row held."""
        return self.lo + self.rows


def band_update(cache: SpatialCache, lo: int, hi: int) -> tuple[int, int, int]:
    """How to make a band hold padded rows ``[lo, hi)``: ``(keep_from, new_lo, new_hi)``.

    Rows ``[keep_from, cache.hi)`` of the current band are kept and rows ``[new_lo, new_hi)``
    are computed and appended (an empty range when ``new_lo >= new_hi``). When the request
    starts above the band or below its end, nothing is kept (``keep_from == cache.hi``) and
    the whole request is computed.

    Args:
        cache (SpatialCache): a banded cache.
        lo (int): first padded row needed.
        hi (int): one past the last padded row needed.

    Returns:
        tuple[int, int, int]: ``(keep_from, new_lo, new_hi)``.
    """
    if cache.rows and cache.lo <= lo <= cache.hi:
        return lo, cache.hi, max(hi, cache.hi)
    return cache.hi, lo, hi


def source_rows(a: int, b: int, target: SpatialCache, source: SpatialGeometry
                ) -> tuple[int, int]:
    """Padded rows of the previous spatial stage needed to compute padded rows ``[a, b)``.

    Padded row ``p`` of ``target`` is input row ``p - pad_top`` (padding rows need nothing);
    input row ``v`` is output row ``v`` of the previous spatial stage (pointwise stages
    between them keep rows), which reads its padded rows ``[v*stride, v*stride + span)``.

    Args:
        a (int): first padded row of ``target`` to compute.
        b (int): one past the last.
        target (SpatialCache): the stage whose rows are computed.
        source (SpatialGeometry): row geometry of the previous spatial stage.

    Returns:
        tuple[int, int]: ``(lo, hi)`` padded rows of the previous stage (empty: ``lo >= hi``).
    """
    v0 = max(a - target.pad_top, 0)
    v1 = min(b - target.pad_top, target.in_size[0])
    if v1 <= v0:
        return 0, 0
    return v0 * source.stride, (v1 - 1) * source.stride + source.span
