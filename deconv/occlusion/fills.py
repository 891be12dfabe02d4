"""What fills the occluder, and the occluded images: the one fill and the one occlude function.

:func:`make_fill` turns every kind of fill (the mean pixel, the image mean, black, zero, a blur,
a number, a per-channel value or a whole image) into a full-size replacement image ``[C, H, W]``
in the model's input space; :func:`occlude_images` builds the occluded copies (the fill's pixels
inside each window, the image's own outside). Every engine and the figures use these two.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from deconv.errors import InvalidArgumentError, InvalidTypeError
from deconv.occlusion.grid import check_boxes

__all__ = ["FILL_NAMES", "make_fill", "occlude_images", "gaussian_blur"]

#: Named fills accepted by :func:`make_fill` (besides a number or a tensor).
FILL_NAMES = ("mean", "image_mean", "zero", "black", "blur")


def make_fill(fill: str | float | torch.Tensor, image: torch.Tensor, *,
              patch: tuple[int, int] | None = None, normalize=None) -> tuple[torch.Tensor, str]:
    """Build the replacement image for an occluder.

    Args:
        fill (str | float | torch.Tensor): one of

            * ``"mean"`` — the model's mean pixel (the paper's grey square): 0 in the input of a
              model that subtracts its training mean (every zoo model; for a bare
              ``nn.Module`` we assume its input is mean-subtracted the same way);
            * ``"image_mean"`` — this image's per-channel mean;
            * ``"zero"`` — the value 0 of the model input (captum's default baseline; equal to
              ``"mean"`` for mean-subtracted inputs);
            * ``"black"`` — black pixels (needs ``normalize``, i.e. a zoo ``LoadedModel``);
            * ``"blur"`` — the same image blurred with a Gaussian of sigma ``max(patch) / 4``;
            * a number — that value in the model input space (like captum's ``baselines``);
            * a tensor: a 0-d value, ``[C]`` (one value per channel), or an image ``[C, H, W]``
              (or ``[1, C, H, W]``), in input space.
        image (torch.Tensor): the model input ``[C, H, W]``.
        patch (tuple[int, int] | None): occluder size (sets the blur width; needed only for
            ``"blur"``).
        normalize (Callable[[torch.Tensor], torch.Tensor] | None): pixels in [0, 1] -> model
            input, when known (``LoadedModel.normalize``).

    Returns:
        tuple[torch.Tensor, str]: the fill ``[C, H, W]`` (dtype and device of ``image``) and a
        short description for captions.

    Raises:
        ValueError: unknown name, non-finite value, or a tensor of the wrong shape.
        TypeError: a fill of another type.
    """
    channels = image.shape[0]
    like = {"dtype": image.dtype, "device": image.device}
    if isinstance(fill, str):
        if fill == "mean":
            return torch.zeros_like(image), "the model's mean pixel (0 in its normalized input)"
        if fill == "image_mean":
            return (image.mean(dim=(1, 2), keepdim=True).expand_as(image).clone(),
                    "the image's mean colour")
        if fill == "zero":
            return torch.zeros_like(image), "0 in the model input"
        if fill == "black":
            if normalize is None:
                raise InvalidArgumentError(
                    "fill='black' needs to know the model's normalization: pass a "
                    "deconv LoadedModel, or give the black value as a number")
            return normalize(torch.zeros_like(image)), "black"
        if fill == "blur":
            if patch is None:
                raise InvalidArgumentError("fill='blur' needs the occluder size: pass patch=(h, w)")
            sigma = max(patch) / 4
            return gaussian_blur(image, sigma), f"the image blurred (Gaussian sigma {sigma:g} px)"
        raise InvalidArgumentError(
            f"unknown fill {fill!r}; use one of {FILL_NAMES}, a number or a tensor")
    if isinstance(fill, bool):
        raise InvalidTypeError("fill must be a name, a number or a tensor, not a bool")
    if isinstance(fill, numbers.Real):
        if not math.isfinite(float(fill)):
            raise InvalidArgumentError(f"fill must be finite, got {fill}")
        return torch.full_like(image, float(fill)), f"{float(fill):g} in the model input"
    if isinstance(fill, torch.Tensor):
        value = fill.to(**like)
        if not torch.isfinite(value).all():
            raise InvalidArgumentError("fill tensor contains NaN or inf")
        if value.ndim == 0:
            return torch.full_like(image, float(value)), f"{float(value):g} in the model input"
        if value.ndim == 4 and value.shape[0] == 1:
            value = value[0]
        if value.shape == (channels,):
            return value.view(-1, 1, 1).expand_as(image).clone(), "a per-channel value"
        if value.shape == image.shape:
            return value.clone(), "a replacement image"
        raise InvalidArgumentError(
            f"fill tensor must have shape [{channels}] or {list(image.shape)}, "
            f"got {list(value.shape)}")
    raise InvalidTypeError(f"fill must be one of {FILL_NAMES}, a number or a tensor, "
                           f"got {type(fill).__name__}")


def occlude_images(image: torch.Tensor, fill: torch.Tensor, boxes) -> torch.Tensor:
    """The occluded copies ``[P, C, H, W]``: ``fill`` inside each window, ``image`` outside.

    Args:
        image (torch.Tensor): the model input ``[C, H, W]``.
        fill (torch.Tensor): the replacement image ``[C, H, W]`` (from :func:`make_fill`).
        boxes (torch.Tensor): long ``[P, 4]`` windows ``(y0, y1, x0, x1)``, end exclusive;
            parts outside the image are ignored.

    Returns:
        torch.Tensor: ``[P, C, H, W]`` on the image's device.

    Raises:
        ValueError: boxes not ``[P, 4]``.
    """
    _, h, w = image.shape
    boxes = check_boxes(boxes).to(image.device)
    rows = torch.arange(h, device=image.device)
    cols = torch.arange(w, device=image.device)
    inside_r = (rows >= boxes[:, :1]) & (rows < boxes[:, 1:2])
    inside_c = (cols >= boxes[:, 2:3]) & (cols < boxes[:, 3:4])
    mask = (inside_r[:, :, None] & inside_c[:, None, :]).unsqueeze(1)
    return torch.where(mask, fill.unsqueeze(0), image.unsqueeze(0))


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[C, H, W]`` with replicated borders.

    Args:
        image (torch.Tensor): ``[C, H, W]``.
        sigma (float): standard deviation in pixels (> 0).

    Returns:
        torch.Tensor: the blurred image, same shape and dtype.
    """
    if not sigma > 0:
        raise InvalidArgumentError(f"blur sigma must be positive, got {sigma}")
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = image.shape[0]
    x = image.unsqueeze(0)
    x = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    x = F.pad(x, (0, 0, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return x.squeeze(0)
