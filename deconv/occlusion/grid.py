"""The grid of occluder positions and the per-pixel average over the windows covering a pixel.

Convention (the same as captum's ``Occlusion``): along a side of length ``n`` a square of side
``p`` moved by ``s`` starts at ``0, s, 2s, ..., k*s`` with ``k = ceil((n - p) / s)``. The last
window may hang over the border; it is clipped there, so every pixel is covered when ``s <= p``.
"""

from __future__ import annotations

import math

import torch

from deconv.errors import InvalidArgumentError

__all__ = ["grid_starts", "occluder_boxes", "check_boxes", "window_average"]


def grid_starts(size: int, patch: int, stride: int) -> list[int]:
    """Start offsets of the occluder along one side.

    Args:
        size (int): image side in pixels.
        patch (int): occluder side (1..size).
        stride (int): step between positions (>= 1).

    Returns:
        list[int]: ``[0, stride, ..., k * stride]`` with ``k = ceil((size - patch) / stride)``.
    """
    count = math.ceil((size - patch) / stride) + 1
    return [i * stride for i in range(count)]


def occluder_boxes(height: int, width: int, patch: tuple[int, int],
                   stride: tuple[int, int]) -> tuple[torch.Tensor, int, int]:
    """Every occluder window on the grid, row-major, clipped to the image.

    Args:
        height (int): image height.
        width (int): image width.
        patch (tuple[int, int]): occluder (height, width).
        stride (tuple[int, int]): step (rows, columns).

    Returns:
        tuple[torch.Tensor, int, int]: ``boxes`` (long [G, 4], rows ``(y0, y1, x0, x1)``, end
        exclusive), and the grid shape ``(rows, columns)`` with ``G = rows * columns``.
    """
    ys = grid_starts(height, patch[0], stride[0])
    xs = grid_starts(width, patch[1], stride[1])
    boxes = [(y, min(y + patch[0], height), x, min(x + patch[1], width)) for y in ys for x in xs]
    return torch.tensor(boxes, dtype=torch.long).view(-1, 4), len(ys), len(xs)


def check_boxes(boxes) -> torch.Tensor:
    """Occluder windows as a long CPU tensor ``[P, 4]`` of rows ``(y0, y1, x0, x1)``.

    Raises:
        ValueError: not ``[P, 4]``.
    """
    boxes = torch.as_tensor(boxes, dtype=torch.long).cpu()
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise InvalidArgumentError(
            f"boxes must be [P, 4] rows (y0, y1, x0, x1); got {list(boxes.shape)}")
    return boxes


def window_average(values: torch.Tensor, boxes: torch.Tensor, height: int,
                   width: int) -> torch.Tensor:
    """Per-pixel mean of ``values[g]`` over the windows ``boxes[g]`` that cover the pixel.

    Args:
        values (torch.Tensor): one number per window, shape [G] (any float dtype).
        boxes (torch.Tensor): long [G, 4] windows ``(y0, y1, x0, x1)``.
        height (int): image height.
        width (int): image width.

    Returns:
        torch.Tensor: float64 [height, width]; NaN where no window covers the pixel (possible
        only when the stride exceeds the patch).
    """
    values = values.reshape(-1).double().cpu()
    total = torch.zeros(height, width, dtype=torch.float64)
    count = torch.zeros(height, width, dtype=torch.float64)
    for value, (y0, y1, x0, x1) in zip(values, boxes.tolist()):
        total[y0:y1, x0:x1] += value
        count[y0:y1, x0:x1] += 1
    return total / count  # 0 / 0 = NaN where uncovered
