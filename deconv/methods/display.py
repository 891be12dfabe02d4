"""Deprecated: moved to :mod:`deconv.plots.scaling`."""

from deconv._deprecation import warn_deprecated
from deconv.plots.scaling import scale_for_display

warn_deprecated("deconv.methods.display", "import from deconv.plots.scaling instead")

__all__ = ["scale_for_display"]
