"""Every figure of the package, one module per kind of picture.

* :mod:`deconv.plots.scaling`: the one display scale (the 99.5th percentile of ``|x|``):
  :func:`robust_peak`, :func:`scale_for_display`, :func:`normalize_for_display`;
* :mod:`deconv.plots.projections`: deconvnet projections, cropping to a receptive field, the
  ``deconv project`` figure;
* :mod:`deconv.plots.topk_grids`: Fig. 2, the top-k projections beside their image patches;
* :mod:`deconv.plots.occlusion`: Fig. 7, the five occlusion panels (:func:`occlusion_panel`: one
  row for a model and a picture, what ``deconv occlude`` and the Fig. 7 scripts call);
* :mod:`deconv.plots.attributions`: the methods-by-images comparison grid;
* :mod:`deconv.plots.optima`: feature-visualization optima sheets;
* :mod:`deconv.plots.png`: small palette PNGs.
"""

from deconv.plots.attributions import SHORT_NAMES, method_grid
from deconv.plots.occlusion import (
    OcclusionPanel,
    feature_projection,
    fill_picture,
    occluded_picture,
    occlusion_panel,
    plot_occlusion_panels,
)
from deconv.plots.optima import (
    OptimaRow,
    render_optima_sheet,
    render_regularization_sheet,
    save_image,
)
from deconv.plots.png import save_figure, save_palette_png
from deconv.plots.projections import (
    crop_to_receptive_field,
    draw_projections,
    save_strongest_projections,
)
from deconv.plots.scaling import (
    DISPLAY_PERCENTILE,
    normalize_for_display,
    robust_peak,
    scale_for_display,
    to_display_image,
)
from deconv.plots.topk_grids import (
    TopKPanel,
    crop,
    mine_and_draw,
    pick_channels,
    render_top_k_figure,
    top_k_panels,
    unit_window,
)

__all__ = ["DISPLAY_PERCENTILE", "OcclusionPanel", "OptimaRow", "SHORT_NAMES", "TopKPanel",
           "crop", "crop_to_receptive_field", "draw_projections", "feature_projection",
           "fill_picture", "method_grid", "mine_and_draw", "normalize_for_display",
           "occluded_picture", "occlusion_panel", "pick_channels", "plot_occlusion_panels",
           "render_optima_sheet", "render_regularization_sheet", "render_top_k_figure",
           "robust_peak", "save_figure", "save_image", "save_palette_png",
           "save_strongest_projections", "scale_for_display", "to_display_image", "top_k_panels",
           "unit_window"]
