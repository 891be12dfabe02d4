"""deconv: Zeiler & Fergus (2014) deconvnet, occlusion and the paper's analyses for PyTorch CNNs.

Vocabulary used throughout: a *feature map* (or activation map) is one channel of a layer's
rectified output; a *filter* is the weights that produce it; a layer is named by its
``named_modules()`` name and refers to that module's output tensor (see :mod:`deconv.layers`).

The public API is re-exported here; each area also has its own subpackage with more parts:
:mod:`deconv.zoo` (models), :mod:`deconv.deconvnet` (projections), :mod:`deconv.mining`
(top-k over a dataset), :mod:`deconv.occlusion`, :mod:`deconv.optimization` (feature
visualization), :mod:`deconv.receptive_field`, :mod:`deconv.activations`,
:mod:`deconv.correspondence`, :mod:`deconv.invariance`, :mod:`deconv.samples`.
"""

from deconv.activations import (
    dead_feature_maps,
    dead_filters,
    feature_maps,
    filter_grid,
    map_grid,
    sparsity,
)
from deconv.correspondence import correspondence_delta, face_images, sign_hamming
from deconv.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist
from deconv.deconvnet import (
    Deconvnet,
    GenericDeconvnet,
    TopUnits,
    UnsupportedModuleError,
    crop_to_receptive_field,
    normalize_for_display,
)
from deconv.distributed import distributed_session, shard_range
from deconv.invariance import InvarianceCurves, invariance_curves, transform_image
from deconv.layers import UnknownLayerError, get_layer, layer_names, resolve_layer
from deconv.methods import attribute, list_methods, method_info, register_method, scale_for_display
from deconv.metrics import (
    box_to_input,
    cascading_randomization,
    deletion,
    input_dependence,
    insertion,
    load_object_boxes,
    pointing_game,
)
from deconv.mining import SampleCrops, TopKEntry, TopKResult, merge_top_k, mine_top_k
from deconv.mining.distributed import dead_feature_maps_distributed, mine_top_k_distributed
from deconv.occlusion import (
    DrillDownResult,
    IncrementalOcclusion,
    OcclusionResult,
    drill_down_map,
    occlusion_methods,
    occlusion_sweep,
    register_occlusion_engine,
)
from deconv.optimization import FeatureVisualization, optima_objectives, visualize_feature
from deconv.probes import fit_linear_probe, layer_features, probe_layers
from deconv.receptive_field import ReceptiveField, ReceptiveFieldError, receptive_field
from deconv.samples import ImageFiles, SampleImage, sample_images
from deconv.training import TrainSettings, evaluate, feature_scale_clip, train
from deconv.zoo import (
    LoadedModel,
    WeightsUnavailableError,
    ZFNet,
    ZFNetConfig,
    list_models,
    load_model,
    register_model,
)

__version__ = "0.1.0"

__all__ = [
    # models and layers
    "LoadedModel", "WeightsUnavailableError", "ZFNet", "ZFNetConfig", "list_models",
    "load_model", "register_model", "UnknownLayerError", "get_layer", "layer_names",
    "resolve_layer", "ReceptiveField", "ReceptiveFieldError", "receptive_field",
    # data
    "ImageFiles", "SampleImage", "sample_images",
    # deconvnet
    "Deconvnet", "GenericDeconvnet", "TopUnits", "UnsupportedModuleError",
    "crop_to_receptive_field", "normalize_for_display",
    # dataset mining, activations, filters
    "SampleCrops", "TopKEntry", "TopKResult", "merge_top_k", "mine_top_k",
    "mine_top_k_distributed", "dead_feature_maps_distributed", "distributed_session",
    "shard_range",
    "dead_feature_maps", "dead_filters", "feature_maps", "filter_grid", "map_grid", "sparsity",
    # occlusion and the paper's analyses
    "OcclusionResult", "occlusion_methods", "occlusion_sweep", "register_occlusion_engine",
    "IncrementalOcclusion", "DrillDownResult", "drill_down_map",
    "correspondence_delta", "face_images", "sign_hamming",
    "InvarianceCurves", "invariance_curves", "transform_image",
    # feature visualization by optimization
    "FeatureVisualization", "optima_objectives", "visualize_feature",
    # attribution methods (ours and captum's) and their metrics
    "attribute", "list_methods", "method_info", "register_method", "scale_for_display",
    "box_to_input", "cascading_randomization", "deletion", "input_dependence", "insertion",
    "load_object_boxes", "pointing_game",
    # training a ZFNet, linear probes
    "FASHION_MNIST_CLASSES", "load_fashion_mnist", "TrainSettings", "evaluate",
    "feature_scale_clip", "train", "fit_linear_probe", "layer_features", "probe_layers",
]
