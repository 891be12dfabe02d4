"""Deprecated: moved to :mod:`deconv.plots.topk_grids` (and the engine choice to
:func:`deconv.deconvnet.deconvnet_for`)."""

from __future__ import annotations

import torch

from deconv._deprecation import warn_deprecated
from deconv.deconvnet.choose import deconvnet_for
from deconv.plots.scaling import DISPLAY_PERCENTILE, normalize_for_display
from deconv.plots.topk_grids import (
    TopKPanel,
    crop,
    mine_and_draw,
    pick_channels,
    render_top_k_figure,
    top_k_panels,
    unit_window,
)

warn_deprecated("deconv.figures_topk", "import from deconv.plots.topk_grids instead")

__all__ = ["TopKPanel", "unit_window", "crop", "display_projection", "pick_channels",
           "top_k_panels", "render_top_k_figure", "deconvnet_for", "mine_and_draw"]


def display_projection(projection: torch.Tensor,
                       percentile: float = DISPLAY_PERCENTILE) -> torch.Tensor:
    """Deprecated: ``normalize_for_display(projection, percentile=percentile)``."""
    return normalize_for_display(projection, percentile=percentile)
