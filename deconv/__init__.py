"""deconv: Zeiler & Fergus (2014) deconvnet, occlusion and the paper's analyses for PyTorch CNNs.

Vocabulary used throughout: a *feature map* (or activation map) is one channel of a layer's
rectified output; a *filter* is the weights that produce it; a layer is named by its
``named_modules()`` name and refers to that module's output tensor (see :mod:`deconv.layers`).

The public API is the short list below (one entry point per task, as captum's
``captum.attr``); everything else lives in the module that implements it and is imported from
there: :mod:`deconv.zoo` (models), :mod:`deconv.deconvnet` (projections), :mod:`deconv.plots`
(every figure), :mod:`deconv.mining` (top-k over a dataset), :mod:`deconv.occlusion`,
:mod:`deconv.optimization` (feature visualization), :mod:`deconv.receptive_field`,
:mod:`deconv.activations`,
:mod:`deconv.methods` and :mod:`deconv.metrics` (attribution methods and their scores),
:mod:`deconv.training`, :mod:`deconv.probes`, :mod:`deconv.datasets`, :mod:`deconv.distributed`,
:mod:`deconv.correspondence`, :mod:`deconv.invariance`, :mod:`deconv.samples`,
:mod:`deconv.model_state`, :mod:`deconv.atlas` (a browsable offline site of every feature map).
Names that used to be exported here and are not any more still work
for one release, with a ``DeprecationWarning`` that says where they live now.
"""

import importlib as _importlib

from deconv._deprecation import warn_deprecated as _warn_deprecated
from deconv.activations import dead_feature_maps, feature_maps
from deconv.atlas import build_atlas
from deconv.correspondence import correspondence_delta
from deconv.deconvnet import Deconvnet, GenericDeconvnet, TopUnits, UnsupportedModuleError
from deconv.errors import DeconvError
from deconv.invariance import invariance_curves
from deconv.layers import UnknownLayerError, get_layer, layer_names, resolve_layer
from deconv.methods import attribute, list_methods, register_method
from deconv.mining import SampleCrops, TopKResult, merge_top_k, mine_top_k
from deconv.mining.distributed import dead_feature_maps_distributed, mine_top_k_distributed
from deconv.occlusion import IncrementalOcclusion, OcclusionResult, drill_down_map, occlusion_sweep
from deconv.optimization import FeatureVisualization, visualize_feature
from deconv.receptive_field import ReceptiveField, ReceptiveFieldError, receptive_field
from deconv.samples import ImageFiles, SampleImage, sample_images
from deconv.zoo import LoadedModel, WeightsUnavailableError, list_models, load_model, register_model

__version__ = "0.1.0"

__all__ = [
    # errors (every bad input raises a subclass: deconv.errors)
    "DeconvError",
    # models and layers
    "LoadedModel",
    "WeightsUnavailableError",
    "list_models",
    "load_model",
    "register_model",
    "UnknownLayerError",
    "get_layer",
    "layer_names",
    "resolve_layer",
    "ReceptiveField",
    "ReceptiveFieldError",
    "receptive_field",
    # images
    "ImageFiles",
    "SampleImage",
    "sample_images",
    # deconvnet
    "Deconvnet",
    "GenericDeconvnet",
    "TopUnits",
    "UnsupportedModuleError",
    # dataset mining, activations
    "SampleCrops",
    "TopKResult",
    "merge_top_k",
    "mine_top_k",
    "mine_top_k_distributed",
    "dead_feature_maps",
    "dead_feature_maps_distributed",
    "feature_maps",
    # occlusion
    "IncrementalOcclusion",
    "OcclusionResult",
    "drill_down_map",
    "occlusion_sweep",
    # the paper's other analyses
    "correspondence_delta",
    "invariance_curves",
    # feature visualization by optimization
    "FeatureVisualization",
    "visualize_feature",
    # the atlas: a browsable offline site of every feature map
    "build_atlas",
    # attribution methods (ours and captum's)
    "attribute",
    "list_methods",
    "register_method",
]

# Names exported here before the public API was narrowed: name -> the module that has it
# ("module:new_name" where it was renamed there too).
_MOVED = {
    "ZFNet": "deconv.zoo",
    "ZFNetConfig": "deconv.zoo",
    "crop_to_receptive_field": "deconv.plots",
    "normalize_for_display": "deconv.plots",
    "TopKEntry": "deconv.mining",
    "distributed_session": "deconv.distributed",
    "shard_range": "deconv.distributed",
    "dead_filters": "deconv.activations",
    "filter_grid": "deconv.activations",
    "map_grid": "deconv.activations",
    "sparsity": "deconv.activations",
    "DrillDownResult": "deconv.occlusion",
    "occlusion_methods": "deconv.occlusion:occlusion_engines",
    "register_occlusion_engine": "deconv.occlusion",
    "face_images": "deconv.correspondence",
    "sign_hamming": "deconv.correspondence",
    "InvarianceCurves": "deconv.invariance",
    "transform_image": "deconv.invariance",
    "optima_objectives": "deconv.optimization",
    "method_info": "deconv.methods",
    "scale_for_display": "deconv.plots",
    "box_to_input": "deconv.metrics",
    "cascading_randomization": "deconv.metrics",
    "deletion": "deconv.metrics",
    "input_dependence": "deconv.metrics",
    "insertion": "deconv.metrics",
    "load_object_boxes": "deconv.metrics",
    "pointing_game": "deconv.metrics",
    "FASHION_MNIST_CLASSES": "deconv.datasets",
    "load_fashion_mnist": "deconv.datasets",
    "TrainSettings": "deconv.training",
    "evaluate": "deconv.training",
    "feature_scale_clip": "deconv.training",
    "train": "deconv.training",
    "fit_linear_probe": "deconv.probes",
    "layer_features": "deconv.probes",
    "probe_layers": "deconv.probes",
}


def __getattr__(name: str) -> object:
    """Old root names (with a DeprecationWarning) and subpackages not yet imported."""
    if name in _MOVED:
        home, _, new = _MOVED[name].partition(":")
        _warn_deprecated(f"deconv.{name}", f"import {new} from {home}" if new else
                         f"import it from {home}")
        return getattr(_importlib.import_module(home), new or name)
    try:
        return _importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module 'deconv' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
