"""Transformation robustness (Olah et al. 2017): small random changes before every step.

An optimum that only works at one exact pixel alignment is made of high-frequency patterns the
network reads but people do not see. Jittering, scaling and rotating the image a little before
each forward pass averages those away. Every transform here is differentiable (crops, padding,
bilinear resampling), draws its randomness from the ``torch.Generator`` it is given (so a seed
fixes the whole run), and is exactly the identity at zero magnitude (``Pad(0)``, ``Jitter(0)``,
``RandomScale((1, 1))``, ``RandomRotate(0)``): the draw is skipped, not resampled.

A transform is called as ``transform(images, generator)`` on ``[B, 3, H, W]`` pixels in [0, 1];
the same draw applies to every image of the batch (as in Lucid).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from deconv.errors import InvalidArgumentError

__all__ = ["Pad", "Jitter", "RandomScale", "RandomRotate", "Compose", "standard_transforms"]


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


class Pad:
    """Pad every side by ``width`` pixels with a constant (grey 0.5 by default) or ``"reflect"``.

    Padding gives the jitter room, so the image's border is not always at the network's border.
    """

    def __init__(self, width: int, mode: str = "constant", value: float = 0.5):
        if width < 0:
            raise InvalidArgumentError(f"pad width must be >= 0, got {width}")
        if mode not in ("constant", "reflect", "replicate"):
            raise InvalidArgumentError(
                f"mode must be 'constant', 'reflect' or 'replicate', got {mode!r}")
        self.width, self.mode, self.value = int(width), mode, value

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None):
        if self.width == 0:
            return images
        pad = (self.width,) * 4
        if self.mode == "constant":
            return F.pad(images, pad, mode="constant", value=self.value)
        return F.pad(images, pad, mode=self.mode)

    def __repr__(self) -> str:
        return f"Pad({self.width}, {self.mode!r})"


class Jitter:
    """Crop a random window ``distance`` pixels smaller than the image (a random shift of up to
    ``distance`` pixels; Lucid's ``jitter``)."""

    def __init__(self, distance: int):
        if distance < 0:
            raise InvalidArgumentError(f"jitter distance must be >= 0, got {distance}")
        self.distance = int(distance)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None):
        d = self.distance
        if d == 0:
            return images
        h, w = images.shape[-2:]
        if d >= min(h, w):
            raise InvalidArgumentError(f"jitter {d} is not smaller than the image ({h} x {w})")
        dy, dx = (int(v) for v in torch.randint(0, d + 1, (2,), generator=generator))
        return images[..., dy:dy + h - d, dx:dx + w - d]

    def __repr__(self) -> str:
        return f"Jitter({self.distance})"


class RandomScale:
    """Resize by a factor drawn uniformly from ``[low, high]`` (bilinear; the size changes)."""

    def __init__(self, scales: Sequence[float] = (0.95, 1.05)):
        low, high = (float(s) for s in scales)
        if not 0 < low <= high:
            raise InvalidArgumentError(f"scales must satisfy 0 < low <= high, got {scales}")
        self.low, self.high = low, high

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None):
        if self.low == self.high == 1.0:
            return images
        factor = _uniform(self.low, self.high, generator)
        h, w = images.shape[-2:]
        size = (max(1, round(h * factor)), max(1, round(w * factor)))
        if size == (h, w):
            return images
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False)

    def __repr__(self) -> str:
        return f"RandomScale(({self.low}, {self.high}))"


class RandomRotate:
    """Rotate about the centre by an angle drawn uniformly from ``[-degrees, degrees]``
    (bilinear; corners are filled from the border)."""

    def __init__(self, degrees: float = 5.0):
        if degrees < 0:
            raise InvalidArgumentError(f"degrees must be >= 0, got {degrees}")
        self.degrees = float(degrees)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None):
        if self.degrees == 0:
            return images
        angle = math.radians(_uniform(-self.degrees, self.degrees, generator))
        h, w = images.shape[-2:]
        cos, sin = math.cos(angle), math.sin(angle)
        # affine_grid works in [-1, 1] coordinates; scale the off-diagonal terms by the aspect
        # ratio so a non-square image is rotated, not sheared.
        theta = torch.tensor([[cos, -sin * h / w, 0.0], [sin * w / h, cos, 0.0]],
                             dtype=images.dtype, device=images.device)
        grid = F.affine_grid(theta.expand(images.shape[0], 2, 3), list(images.shape),
                             align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                             align_corners=False)

    def __repr__(self) -> str:
        return f"RandomRotate({self.degrees})"


class Compose:
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None):
        for transform in self.transforms:
            images = transform(images, generator)
        return images

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


def standard_transforms(pad: int = 12, jitter: int = 8, scales: Sequence[float] = (0.95, 1.05),
                        degrees: float = 5.0, final_jitter: int = 4) -> Compose:
    """The article's transformation robustness, at the sizes of small images: pad, jitter,
    random scale (0.95-1.05), random rotation (+-5 degrees), a second smaller jitter (the
    article jitters 16 then 8 px at 2560 steps on large images; Lucid's default chain pads 12
    and jitters 8 then 4)."""
    return Compose([Pad(pad), Jitter(jitter), RandomScale(scales), RandomRotate(degrees),
                    Jitter(final_jitter)])
