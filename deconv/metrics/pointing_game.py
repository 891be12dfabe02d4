"""Pointing game (Zhang et al. 2016, "Top-down neural attention by excitation backprop").

A map scores a hit when its maximum lies on the object, with a tolerance of 15 pixels: the
Euclidean distance from the maximum to the nearest pixel of one of the object's boxes is at
most ``tolerance``. Accuracy = hits / images. Ties: one of the maxima drawn with a fixed seed
(not the first in raster order, which made a constant map "hit" objects near the top-left);
a constant map points nowhere: it is a miss, flagged in :attr:`PointingResult.constant`.

Boxes are ``[x0, y0, x1, y1]`` in pixels, end exclusive, in the coordinates of the map. Boxes
annotated on an original photo must go through the same resize and crop as the image:
:func:`box_to_input` reproduces :meth:`deconv.zoo.LoadedModel.preprocess`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import torch

from deconv.errors import InvalidArgumentError

__all__ = ["PointingResult", "argmax_point", "distance_to_box", "pointing_hit", "pointing_game",
           "box_to_input", "load_object_boxes", "TOLERANCE"]

#: Zhang et al.'s tolerance in pixels (at the model's input resolution).
TOLERANCE = 15.0

Box = Sequence[float]


@dataclass
class PointingResult:
    """Pointing-game outcome over a set of maps.

    Attributes:
        hits (list[bool]): one per map.
        points (list[tuple[int, int]]): each map's maximum as ``(x, y)``.
        accuracy (float): ``sum(hits) / len(hits)``.
        constant (list[bool]): maps with no maximum (constant; counted as misses).
    """

    hits: list[bool]
    points: list[tuple[int, int]]
    accuracy: float
    constant: list[bool] | None = None


def argmax_point(saliency: torch.Tensor, tie_seed: int = 0) -> tuple[int, int]:
    """``(x, y)`` of the map's maximum; on ties one of the maxima, drawn with ``tie_seed``.

    Raises:
        ValueError: not a 2-D map, or it contains NaN.
    """
    if saliency.dim() != 2:
        raise InvalidArgumentError(
            f"saliency must be a map [H, W], got shape {tuple(saliency.shape)}")
    if torch.isnan(saliency).any():
        raise InvalidArgumentError("saliency contains NaN; the pointing game needs a finite map")
    flat = saliency.reshape(-1)
    maxima = torch.nonzero(flat == flat.max()).reshape(-1)
    pick = int(torch.randint(len(maxima), (1,), generator=torch.Generator().manual_seed(
        tie_seed))) if len(maxima) > 1 else 0
    index = int(maxima[pick])
    width = saliency.shape[1]
    return index % width, index // width


def distance_to_box(point: tuple[float, float], box: Box) -> float:
    """Euclidean distance from pixel ``(x, y)`` to the nearest pixel of ``box`` (0 inside).

    ``box`` is ``[x0, y0, x1, y1]`` end exclusive: its pixels are ``x0 <= x <= x1 - 1``.
    """
    x, y = point
    x0, y0, x1, y1 = box
    dx = max(x0 - x, 0.0, x - (x1 - 1))
    dy = max(y0 - y, 0.0, y - (y1 - 1))
    return float((dx * dx + dy * dy) ** 0.5)


def pointing_hit(saliency: torch.Tensor, boxes: Sequence[Box],
                 tolerance: float = TOLERANCE) -> bool:
    """Whether the map's maximum lies within ``tolerance`` pixels of any of ``boxes``.

    Raises:
        ValueError: no boxes (the image has no object to point at), or a bad map.
    """
    if len(boxes) == 0:
        raise InvalidArgumentError("no object box for this map; leave the image out of the game")
    if tolerance < 0:
        raise InvalidArgumentError(f"tolerance must be >= 0, got {tolerance}")
    if bool(saliency.max() == saliency.min()):
        return False  # a constant map points nowhere
    point = argmax_point(saliency)
    return min(distance_to_box(point, box) for box in boxes) <= tolerance


def pointing_game(maps: torch.Tensor | Sequence[torch.Tensor], boxes: Sequence[Sequence[Box]],
                  tolerance: float = TOLERANCE) -> PointingResult:
    """Pointing game over maps ``[N, H, W]`` and one list of boxes per map.

    Raises:
        ValueError: the number of maps and box lists differ.
    """
    if len(maps) != len(boxes):
        raise InvalidArgumentError(
            f"{len(maps)} maps but {len(boxes)} box lists; give one list per map")
    hits = [pointing_hit(m, b, tolerance) for m, b in zip(maps, boxes)]
    points = [argmax_point(m) for m in maps]
    constant = [bool(m.max() == m.min()) for m in maps]
    return PointingResult(hits, points, sum(hits) / len(hits) if hits else float("nan"),
                          constant)


def box_to_input(box: Box, original_size: tuple[int, int], side: int = 224,
                 crop: bool = True) -> list[float] | None:
    """Map a box on the original photo to the model input made by ``LoadedModel.preprocess``.

    ``preprocess`` resizes the short side to ``side`` (the long side to
    ``max(side, round(long * side / short))``) then centre-crops ``side x side`` (``crop=True``),
    or squashes the photo to ``side x side`` (``crop=False``).

    Args:
        box (Sequence[float]): ``[x0, y0, x1, y1]`` in original pixels, end exclusive.
        original_size (tuple[int, int]): ``(width, height)`` of the photo (PIL's ``size``).
        side (int): the input side.
        crop (bool): as in ``preprocess``.

    Returns:
        list[float] | None: the box in input pixels, clipped to the input; None when the crop
        cut the object out entirely.
    """
    w, h = original_size
    if crop:
        scale = side / min(w, h)
        new_w, new_h = max(side, round(w * scale)), max(side, round(h * scale))
        left, top = (new_w - side) // 2, (new_h - side) // 2
    else:
        new_w = new_h = side
        left = top = 0
    sx, sy = new_w / w, new_h / h
    x0, y0, x1, y1 = box
    out = [min(max(x0 * sx - left, 0.0), side), min(max(y0 * sy - top, 0.0), side),
           min(max(x1 * sx - left, 0.0), side), min(max(y1 * sy - top, 0.0), side)]
    if out[2] <= out[0] or out[3] <= out[1]:
        return None
    return out


def load_object_boxes() -> dict:
    """The object boxes annotated for the offline sample photos (``deconv/data/object_boxes.json``).

    Returns:
        dict: ``{image name: {"size": [w, h], "objects": [{"label", "class_ids", "box"}]}}``;
        boxes are ``[x0, y0, x1, y1]`` in original-photo pixels (use :func:`box_to_input`).
    """
    text = resources.files("deconv").joinpath("data/object_boxes.json").read_text()
    return json.loads(text)
