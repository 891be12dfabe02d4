"""Deprecated: moved to :mod:`deconv.plots.occlusion`."""

from deconv._deprecation import warn_deprecated
from deconv.plots.occlusion import OcclusionPanel, feature_projection, plot_occlusion_panels

warn_deprecated("deconv.occlusion.figure", "import from deconv.plots.occlusion instead")

__all__ = ["OcclusionPanel", "feature_projection", "plot_occlusion_panels"]
