"""Invariance to translation, scale and rotation (Zeiler & Fergus 2014, Sec. 4.4, Fig. 5).

Transform an image by a sweep of amounts and measure, at each amount, the Euclidean distance
between the feature vectors of the original and the transformed image at chosen layers, and
the probability of the image's label. The paper found that layer 1 changes a lot for small
shifts, the top layer changes quasi-linearly with translation and scale, and the output is
stable to translation and scale but not to rotation (unless the object is rotationally
symmetric).

Transforms act on model inputs ``[..., C, H, W]`` (normalized), and what enters from outside
the picture is 0, which is the mean pixel of a normalized input (a neutral grey border).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deconv.errors import InvalidArgumentError, InvalidTypeError
from deconv.layers import capture_outputs, module_of, resolve_layer

__all__ = ["TRANSFORMS", "InvarianceCurves", "translate_vertical", "scale_image",
           "rotate_image", "transform_image", "invariance_curves"]

#: Transform kinds and the unit of their amount.
TRANSFORMS = {"translate": "pixels (down > 0)", "scale": "ratio (zoom in > 1)",
              "rotate": "degrees (counter-clockwise)"}


def translate_vertical(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """Shift the content down by ``pixels`` (up if negative); vacated rows become 0.

    Args:
        x (torch.Tensor): ``[..., C, H, W]``.
        pixels (int): whole pixels (exact, no interpolation).
    """
    if isinstance(pixels, bool) or not isinstance(pixels, numbers.Integral):
        raise InvalidTypeError(
            f"vertical translation must be a whole number of pixels, got {pixels!r}")
    height = x.shape[-2]
    out = torch.zeros_like(x)
    if abs(pixels) >= height:
        return out
    if pixels >= 0:
        out[..., pixels:, :] = x[..., :height - pixels, :]
    else:
        out[..., :height + pixels, :] = x[..., -pixels:, :]
    return out


def scale_image(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Zoom about the centre by ``factor`` (> 1 enlarges the content; bilinear; border 0).

    Args:
        x (torch.Tensor): ``[C, H, W]`` or ``[N, C, H, W]``.
        factor (float): positive ratio; 1 returns an exact copy.
    """
    if not (isinstance(factor, numbers.Real) and math.isfinite(factor) and factor > 0):
        raise InvalidArgumentError(f"scale factor must be a positive finite number, got {factor!r}")
    if factor == 1:
        return x.clone()
    return _affine(x, torch.eye(2, dtype=torch.float64) / factor)


def rotate_image(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate counter-clockwise (as displayed) about the centre (bilinear; corners become 0).

    Args:
        x (torch.Tensor): ``[C, H, W]`` or ``[N, C, H, W]``.
        degrees (float): angle; multiples of 360 return an exact copy.
    """
    if not (isinstance(degrees, numbers.Real) and math.isfinite(degrees)):
        raise InvalidArgumentError(f"rotation angle must be a finite number, got {degrees!r}")
    if degrees % 360 == 0:
        return x.clone()
    a = math.radians(degrees)
    # output pixel offset (dx, dy) from the centre samples the input at R @ (dx, dy); with y
    # pointing down this turns the picture counter-clockwise on screen
    rotation = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]],
                            dtype=torch.float64)
    return _affine(x, rotation)


def _affine(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Resample ``x`` so output offset ``d`` (pixels from the centre) reads input ``matrix @ d``."""
    single = x.ndim == 3
    batch = x.unsqueeze(0) if single else x
    if batch.ndim != 4:
        raise InvalidArgumentError(f"expected [C, H, W] or [N, C, H, W], got shape {list(x.shape)}")
    height, width = batch.shape[-2:]
    to_pixels = torch.diag(torch.tensor([width / 2, height / 2], dtype=torch.float64))
    to_unit = torch.diag(torch.tensor([2 / width, 2 / height], dtype=torch.float64))
    theta = torch.zeros(1, 2, 3, dtype=torch.float64)
    theta[0, :, :2] = to_unit @ matrix @ to_pixels
    theta = theta.to(batch.dtype).expand(batch.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    out = F.grid_sample(batch, grid.to(batch.device), mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return out[0] if single else out


def transform_image(x: torch.Tensor, kind: str, amount: float) -> torch.Tensor:
    """Apply one of :data:`TRANSFORMS` (``"translate"`` takes whole pixels)."""
    if kind == "translate":
        return translate_vertical(x, int(amount) if float(amount).is_integer() else amount)
    if kind == "scale":
        return scale_image(x, amount)
    if kind == "rotate":
        return rotate_image(x, amount)
    raise InvalidArgumentError(f"unknown transform {kind!r}; choose one of {list(TRANSFORMS)}")


@dataclass
class InvarianceCurves:
    """One sweep of one transform over several images.

    Attributes:
        kind (str): transform (see :data:`TRANSFORMS`).
        amounts (list[float]): the swept amounts.
        layers (list[str]): module names of the measured layers.
        distances (dict[str, torch.Tensor]): layer -> ``[N, A]`` Euclidean distance between the
            flattened layer outputs of the original and the transformed image.
        probability (torch.Tensor | None): ``[N, A]`` softmax probability of each image's
            label (None for a model without a classifier output).
        top_label (torch.Tensor | None): ``[N, A]`` most probable class.
        targets (list[int] | None): each image's label (given, or its untransformed top class).
    """

    kind: str
    amounts: list[float]
    layers: list[str]
    distances: dict[str, torch.Tensor]
    probability: torch.Tensor | None
    top_label: torch.Tensor | None
    targets: list[int] | None


@torch.no_grad()
def invariance_curves(model, images: torch.Tensor, kind: str, amounts: Sequence[float],
                      layers: Sequence[str | int], targets: Sequence[int] | None = None
                      ) -> InvarianceCurves:
    """Feature distances and label probability along a transform sweep (Fig. 5).

    Args:
        model (nn.Module | LoadedModel): a classifier (logits ``[N, K]``) or feature extractor.
        images (torch.Tensor): normalized model inputs ``[N, C, H, W]``.
        kind (str): ``"translate"``, ``"scale"`` or ``"rotate"``.
        amounts (Sequence[float]): the sweep (pixels, ratio or degrees).
        layers (Sequence[str | int]): layers whose outputs are compared.
        targets (Sequence[int] | None): label per image; the top class of the untransformed
            image by default.

    Returns:
        InvarianceCurves: distances per layer and probabilities, ``[N, len(amounts)]``.
    """
    if kind not in TRANSFORMS:
        raise InvalidArgumentError(f"unknown transform {kind!r}; choose one of {list(TRANSFORMS)}")
    if images.ndim != 4:
        raise InvalidArgumentError(f"images must be [N, C, H, W], got shape {list(images.shape)}")
    if not amounts:
        raise InvalidArgumentError("give at least one amount to sweep")
    names = [resolve_layer(model, layer) for layer in layers]
    module = module_of(model)
    base = capture_outputs(module, images, names)
    has_head = base[1] is not None and base[1].ndim == 2
    if has_head:
        base_prob = torch.softmax(base[1], dim=1)
        if targets is None:
            targets = base_prob.argmax(dim=1).tolist()
        elif len(targets) != images.shape[0]:
            raise InvalidArgumentError(f"need one target per image: {len(targets)} for "
                                                 f"{images.shape[0]} images")
    distances = {name: torch.zeros(images.shape[0], len(amounts), dtype=torch.float64)
                 for name in names}
    probability = torch.zeros(images.shape[0], len(amounts), dtype=torch.float64)
    top_label = torch.zeros(images.shape[0], len(amounts), dtype=torch.long)
    index = torch.arange(images.shape[0])
    for a, amount in enumerate(amounts):
        moved = transform_image(images, kind, amount)
        feats, output = capture_outputs(module, moved, names)
        for name in names:
            distances[name][:, a] = (feats[name] - base[0][name]).double().norm(dim=1)
        if has_head:
            p = torch.softmax(output, dim=1)
            probability[:, a] = p[index, torch.as_tensor(targets)].double()
            top_label[:, a] = p.argmax(dim=1)
    return InvarianceCurves(kind, [float(v) for v in amounts], names, distances,
                            probability if has_head else None, top_label if has_head else None,
                            list(targets) if has_head else None)

