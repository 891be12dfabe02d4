"""Does hiding the object hurt more than hiding the background? (Zeiler & Fergus 2014, Fig. 7)

The paper's claim for its occlusion figure: "the probability of the correct class drops
significantly when the object is occluded", i.e. the classifier localizes the object rather
than using the surrounding context. This module measures it on a sweep's grid of occluder
positions, given an object mask (a box, or the pixels of the object):

* a position is *on the object* when the occluder's window lies at least ``inside`` (default
  half) on the mask, and *on the background* when it covers at most ``outside`` of it (default
  0: not one object pixel);
* per image: the mean drop ``p(target | image) - p(target | occluded)`` over each set;
* over images: the mean of both, their mean difference, and the fraction of images where
  covering the object hurts more (drop on the object > drop on the background). Images
  without positions of both kinds are left out and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from deconv.errors import InvalidArgumentError

__all__ = ["InsideOutside", "as_dict", "box_coverage", "box_mask", "inside_outside_drop",
           "inside_outside_of", "summarize_inside_outside"]


@dataclass(frozen=True)
class InsideOutside:
    """Mean drop of the target probability with the occluder on the object vs the background.

    Attributes:
        inside_drop (float): mean drop over positions on the object.
        outside_drop (float): mean drop over positions on the background.
        inside_positions (int): how many positions were on the object.
        outside_positions (int): how many were on the background.
    """

    inside_drop: float
    outside_drop: float
    inside_positions: int
    outside_positions: int

    @property
    def object_hurts_more(self) -> bool:
        """True when hiding the object lowers the probability more than hiding background."""
        return self.inside_drop > self.outside_drop


def box_mask(box: Sequence[float], height: int, width: int) -> torch.Tensor:
    """Boolean ``[H, W]`` mask of the pixels whose centres lie in ``box = [x0, y0, x1, y1]``
    (end exclusive, possibly fractional; the format of ``deconv/data/object_boxes.json``)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    ys = torch.arange(height, dtype=torch.float64) + 0.5
    xs = torch.arange(width, dtype=torch.float64) + 0.5
    return (((ys >= y0) & (ys < y1))[:, None]) & (((xs >= x0) & (xs < x1))[None, :])


def box_coverage(boxes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fraction of each occluder window's pixels that lie on the mask.

    Args:
        boxes (torch.Tensor): ``[P, 4]`` windows ``(y0, y1, x0, x1)``, end exclusive (the
            layout of ``OcclusionResult.boxes``).
        mask (torch.Tensor): ``[H, W]`` bool (or 0/1) object mask.

    Returns:
        torch.Tensor: float64 ``[P]`` in [0, 1] (0 for an empty window).
    """
    if mask.ndim != 2:
        raise InvalidArgumentError(f"mask must be [H, W], got shape {list(mask.shape)}")
    integral = torch.zeros(mask.shape[0] + 1, mask.shape[1] + 1, dtype=torch.float64)
    integral[1:, 1:] = mask.double().cumsum(0).cumsum(1)
    b = boxes.long()
    y0, y1, x0, x1 = (b[:, i].clamp(0, mask.shape[i // 2]) for i in range(4))
    inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    area = ((y1 - y0) * (x1 - x0)).double()
    return torch.where(area > 0, inside / area.clamp(min=1), torch.zeros_like(area))


def inside_outside_drop(boxes: torch.Tensor, probability: torch.Tensor,
                        base_probability: float, mask: torch.Tensor, inside: float = 0.5,
                        outside: float = 0.0) -> InsideOutside | None:
    """Mean drop of ``p(target)`` with the occluder on the object vs on the background.

    Args:
        boxes (torch.Tensor): ``[P, 4]`` occluder windows ``(y0, y1, x0, x1)``.
        probability (torch.Tensor): ``p(target | occluded)`` per position, ``[P]`` or the
            ``[rows, cols]`` grid (row-major, as the boxes).
        base_probability (float): ``p(target | image)``.
        mask (torch.Tensor): ``[H, W]`` object mask.
        inside (float): a window on at least this fraction of mask pixels is on the object.
        outside (float): a window on at most this fraction is on the background
            (``outside < inside``).

    Returns:
        InsideOutside | None: the two means and counts; None when one of the two sets is
        empty (no comparison possible for this image).

    Raises:
        ValueError: thresholds out of order or sizes that do not match.
    """
    if not 0 <= outside < inside <= 1:
        raise InvalidArgumentError(f"need 0 <= outside < inside <= 1, got outside={outside}, "
                                   f"inside={inside}")
    drop = base_probability - probability.reshape(-1).double()
    if drop.numel() != boxes.shape[0]:
        raise InvalidArgumentError(
            f"{drop.numel()} probabilities for {boxes.shape[0]} occluder boxes")
    coverage = box_coverage(boxes, mask)
    on, off = coverage >= inside, coverage <= outside
    if not bool(on.any()) or not bool(off.any()):
        return None
    return InsideOutside(float(drop[on].mean()), float(drop[off].mean()), int(on.sum()),
                         int(off.sum()))


def inside_outside_of(result, mask: torch.Tensor, inside: float = 0.5,
                      outside: float = 0.0) -> InsideOutside | None:
    """:func:`inside_outside_drop` of an occlusion sweep's result (its boxes, probability
    map and unoccluded probability)."""
    if result.probability is None:
        raise InvalidArgumentError(
            "the sweep has no probabilities (the model has no classifier head)")
    return inside_outside_drop(result.boxes, result.probability, result.base_probability, mask,
                               inside, outside)


def summarize_inside_outside(stats: Sequence[InsideOutside | None], resamples: int = 2000,
                             seed: int = 0) -> dict:
    """Aggregate per-image results: means, their difference with a bootstrap 95% interval,
    and the fraction of images where hiding the object hurts more.

    Args:
        stats (Sequence[InsideOutside | None]): one per image (None: left out, counted).
        resamples (int): bootstrap resamples of the images for the interval.
        seed (int): seed of the bootstrap.

    Returns:
        dict: ``images`` (compared), ``left_out``, ``mean_inside_drop``,
        ``mean_outside_drop``, ``mean_difference``, ``difference_ci95``,
        ``fraction_object_hurts_more``, ``mean_inside_positions``,
        ``mean_outside_positions`` (NaN-free: values are None when no image is compared).
    """
    kept = [s for s in stats if s is not None]
    out = {"images": len(kept), "left_out": len(stats) - len(kept)}
    if not kept:
        return {**out, "mean_inside_drop": None, "mean_outside_drop": None,
                "mean_difference": None, "difference_ci95": None,
                "fraction_object_hurts_more": None, "mean_inside_positions": None,
                "mean_outside_positions": None}
    inside = torch.tensor([s.inside_drop for s in kept], dtype=torch.float64)
    outside = torch.tensor([s.outside_drop for s in kept], dtype=torch.float64)
    diff = inside - outside
    g = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, len(kept), (resamples, len(kept)), generator=g)
    means = diff[picks].mean(dim=1)
    low, high = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64))
    return {**out, "mean_inside_drop": float(inside.mean()),
            "mean_outside_drop": float(outside.mean()), "mean_difference": float(diff.mean()),
            "difference_ci95": [float(low), float(high)],
            "fraction_object_hurts_more": float((diff > 0).double().mean()),
            "mean_inside_positions": sum(s.inside_positions for s in kept) / len(kept),
            "mean_outside_positions": sum(s.outside_positions for s in kept) / len(kept)}


def as_dict(stat: InsideOutside | None) -> dict | None:
    """JSON-ready form of one image's result."""
    return None if stat is None else {**asdict(stat), "object_hurts_more":
                                      stat.object_hurts_more}
