"""deconv: Zeiler & Fergus (2014) deconvnet, occlusion and the paper's analyses for PyTorch CNNs.

Vocabulary used throughout: a *feature map* (or activation map) is one channel of a layer's
rectified output; a *filter* is the weights that produce it; a layer is named by its
``named_modules()`` name and refers to that module's output tensor (see :mod:`deconv.layers`).
"""

from deconv.layers import UnknownLayerError, get_layer, layer_names, resolve_layer
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
    "LoadedModel", "UnknownLayerError", "WeightsUnavailableError", "ZFNet", "ZFNetConfig",
    "get_layer", "layer_names", "list_models", "load_model", "register_model", "resolve_layer",
]
