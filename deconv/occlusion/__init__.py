"""Occlusion sensitivity (Zeiler & Fergus 2014, Fig. 7): :func:`occlusion_sweep` and its parts."""

from deconv._deprecation import deprecated_names
from deconv.occlusion import graph_engine, incremental  # noqa: F401  (register the engines)
from deconv.occlusion.approximate import DrillDownResult, drill_down_map
from deconv.occlusion.engines import OccludedBatch, occlusion_methods, register_occlusion_engine
from deconv.occlusion.fills import FILL_NAMES, gaussian_blur, make_fill
from deconv.occlusion.graph_engine import GraphOcclusion, supports_graph
from deconv.occlusion.grid import grid_starts, occluder_boxes, window_average
from deconv.occlusion.incremental import IncrementalOcclusion, OcclusionOutputs
from deconv.occlusion.sweep import OcclusionResult, occlusion_sweep

__all__ = ["DrillDownResult", "FILL_NAMES", "GraphOcclusion", "IncrementalOcclusion",
           "OccludedBatch", "OcclusionOutputs", "OcclusionResult", "drill_down_map",
           "gaussian_blur", "grid_starts", "make_fill", "occluder_boxes", "occlusion_methods",
           "occlusion_sweep", "register_occlusion_engine", "supports_graph", "window_average"]

# An implementation helper exported here before; it stays in its module.
__getattr__ = deprecated_names(__name__, {
    "evaluate_occluded": ("import it from deconv.occlusion.engines",
                          "deconv.occlusion.engines:evaluate_occluded"),
})
