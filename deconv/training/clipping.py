"""Feature-scale clipping (Zeiler & Fergus 2014, Sec. 3): cap the RMS of every conv filter.

"We renormalize each filter in the convolutional layers whose RMS value exceeds a fixed radius of
10^-1 to this fixed radius." A filter is one output channel's weights ``w[o]`` (all input
channels and taps, bias excluded); its RMS is ``sqrt(mean(w[o] ** 2))``. Applied after every
optimizer step it keeps a single filter from growing until its feature map dominates (Fig. 6).
"""

from __future__ import annotations

import torch
from torch import nn

from deconv.errors import InvalidArgumentError

__all__ = ["filter_rms", "feature_scale_clip", "feature_scale_clip_by_layer"]


def filter_rms(weight: torch.Tensor) -> torch.Tensor:
    """RMS of each filter of a conv weight ``[out, in, kh, kw]`` -> ``[out]``."""
    if weight.dim() < 2:
        raise InvalidArgumentError(
            f"expected a conv weight [out, in, ...], got shape {tuple(weight.shape)}")
    return weight.detach().flatten(1).pow(2).mean(dim=1).sqrt()


def feature_scale_clip(model: nn.Module, radius: float = 0.1) -> int:
    """Rescale in place every conv filter whose RMS exceeds ``radius`` to RMS ``radius``.

    Filters at or under the radius are not touched (bit for bit). A clipped filter ends a few
    units in the last place under the radius, so its RMS never exceeds it. Biases are unchanged.

    Args:
        model (nn.Module): the network; every ``nn.Conv2d`` (any ``_ConvNd``) is visited.
        radius (float): the largest RMS allowed (0.1 in the paper).

    Returns:
        int: how many filters were rescaled.

    Raises:
        ValueError: ``radius`` is not positive.
    """
    return sum(feature_scale_clip_by_layer(model, radius).values())


@torch.no_grad()
def feature_scale_clip_by_layer(model: nn.Module, radius: float = 0.1,
                                layer_radii: dict[str, float] | None = None) -> dict[str, int]:
    """:func:`feature_scale_clip`, returning how many filters were rescaled in each conv layer.

    Args:
        model (nn.Module): the network; every ``nn.Conv2d`` (any ``_ConvNd``) is visited.
        radius (float): the largest RMS allowed (0.1 in the paper).
        layer_radii (dict[str, float] | None): a different radius for these conv modules
            (by name), e.g. ``{"features.0": 0.03}``; the others use ``radius``.

    Returns:
        dict[str, int]: ``{module name: filters rescaled}`` for every conv layer (0 included),
        in ``named_modules()`` order.

    Raises:
        ValueError: ``radius`` is not positive.
    """
    layer_radii = dict(layer_radii or {})
    if not radius > 0 or not all(r > 0 for r in layer_radii.values()):
        raise InvalidArgumentError(f"radii must be positive, got {radius} and {layer_radii}")
    convs = {name for name, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)}
    unknown = sorted(set(layer_radii) - convs)
    if unknown:
        raise InvalidArgumentError(f"layer_radii names {unknown}, which are not conv modules of "
                                   f"the model; its conv modules are {sorted(convs)}")
    counts: dict[str, int] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            radius_here = layer_radii.get(name, radius)
            weight = module.weight
            rms = filter_rms(weight)
            over = rms > radius_here
            counts[name] = int(over.sum())
            if counts[name]:
                # a hair under the radius, so rounding never leaves a filter above it
                margin = 1.0 - 4 * torch.finfo(weight.dtype).eps
                scale = (radius_here * margin / rms[over]).to(weight.dtype)
                weight[over] *= scale.view(-1, *([1] * (weight.dim() - 1)))
    return counts
