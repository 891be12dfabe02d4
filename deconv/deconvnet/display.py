"""Deprecated: moved to :mod:`deconv.plots.scaling` and :mod:`deconv.plots.projections`."""

from deconv._deprecation import warn_deprecated
from deconv.plots.projections import crop_to_receptive_field
from deconv.plots.scaling import normalize_for_display, to_display_image

warn_deprecated("deconv.deconvnet.display", "import from deconv.plots instead")

__all__ = ["normalize_for_display", "to_display_image", "crop_to_receptive_field"]
