"""Deprecated: moved to :mod:`deconv.plots.attributions`."""

from deconv._deprecation import warn_deprecated
from deconv.plots.attributions import SHORT_NAMES, method_grid, save_figure

warn_deprecated("deconv.methods.figure", "import from deconv.plots.attributions instead")

__all__ = ["method_grid", "save_figure", "SHORT_NAMES"]
