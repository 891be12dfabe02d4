"""TensorFlow ``"SAME"`` padding as a module (for ported TF models such as EfficientNet-Lite).

It lives outside the zoo because the engines that must recognise it (the graph-wide occlusion
plan keeps it as one node and knows where its odd pixel goes) should not depend on the zoo.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SamePad2d"]


class SamePad2d(nn.Module):
    """TensorFlow ``"SAME"`` zero padding for a strided conv: the extra pixel goes bottom/right.

    Args:
        kernel (int): kernel size of the conv that follows (padding 0).
        stride (int): its stride.
    """

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def pads(self, n: int) -> tuple[int, int]:
        """(before, after) zero rows (or columns) for an input of size ``n``."""
        total = max((math.ceil(n / self.stride) - 1) * self.stride + self.kernel - n, 0)
        return total // 2, total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad ``x`` [B, C, H, W] so that the conv gives ``ceil(H / stride)`` rows."""
        top, bottom = self.pads(x.shape[-2])
        left, right = self.pads(x.shape[-1])
        return F.pad(x, (left, right, top, bottom))

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}"
