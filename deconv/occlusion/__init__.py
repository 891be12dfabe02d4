"""Occlusion sensitivity (Zeiler & Fergus 2014, Fig. 7): :func:`occlusion_sweep` and its parts.

One of everything: one fill function (:func:`make_fill`), one occlude function
(:func:`occlude_images`), one output type for every engine (:class:`OcclusionOutputs`), and an
explicit engine registry (:mod:`deconv.occlusion.engines`, which says how to add an engine).
"""

from deconv._deprecation import deprecated_names
from deconv.occlusion.approximate import DrillDownResult, drill_down_map
from deconv.occlusion.engines import (
    build_engine,
    occlusion_engines,
    register_occlusion_engine,
)
from deconv.occlusion.fills import FILL_NAMES, gaussian_blur, make_fill, occlude_images
from deconv.occlusion.graph_engine import GraphOcclusion, supports_graph
from deconv.occlusion.grid import grid_starts, occluder_boxes, window_average
from deconv.occlusion.incremental import IncrementalOcclusion
from deconv.occlusion.naive import NaiveOcclusion
from deconv.occlusion.outputs import OcclusionOutputs
from deconv.occlusion.result import ClassScores, FeatureTotals, OcclusionGrid, OcclusionResult
from deconv.occlusion.sweep import WrappedModel, occlusion_sweep

__all__ = ["ClassScores", "DrillDownResult", "FILL_NAMES", "FeatureTotals", "GraphOcclusion",
           "IncrementalOcclusion", "NaiveOcclusion", "OcclusionGrid", "OcclusionOutputs",
           "OcclusionResult", "WrappedModel", "build_engine", "drill_down_map", "gaussian_blur",
           "grid_starts", "make_fill", "occlude_images", "occluder_boxes", "occlusion_engines",
           "occlusion_sweep", "register_occlusion_engine", "supports_graph", "window_average"]

# Names exported here before; they keep working for one release.
__getattr__ = deprecated_names(__name__, {
    "evaluate_occluded": ("import it from deconv.occlusion.engines",
                          "deconv.occlusion.engines:evaluate_occluded"),
    "OccludedBatch": ("use OcclusionOutputs (.captured is the old .layer_totals)",
                      "deconv.occlusion.outputs:OcclusionOutputs"),
    "occlusion_methods": ("use occlusion_engines()", "deconv.occlusion.engines:occlusion_engines"),
})
