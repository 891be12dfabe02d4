"""The model zoo: ``list_models()``, ``load_model(name)`` and the registry behind them."""

from deconv.zoo import efficientnet_lite0, hed_vgg16, torchvision_models, zfnet  # noqa: F401  (registration side effects)
from deconv.zoo.registry import (
    LoadedModel,
    ModelInfo,
    WeightsUnavailableError,
    list_models,
    load_model,
    model_info,
    register_model,
)
from deconv.zoo.zfnet import ZFNET_CONFIGS, ZFNet, ZFNetConfig

__all__ = ["LoadedModel", "ModelInfo", "WeightsUnavailableError", "list_models", "load_model",
           "model_info", "register_model", "ZFNet", "ZFNetConfig", "ZFNET_CONFIGS"]
