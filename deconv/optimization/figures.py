"""Deprecated: moved to :mod:`deconv.plots.optima`."""

from deconv._deprecation import warn_deprecated
from deconv.plots.optima import (
    OptimaRow,
    render_optima_sheet,
    render_regularization_sheet,
    save_image,
)

warn_deprecated("deconv.optimization.figures", "import from deconv.plots.optima instead")

__all__ = ["save_image", "OptimaRow", "render_optima_sheet", "render_regularization_sheet"]
