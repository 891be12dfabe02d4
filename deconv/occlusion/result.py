"""What an occlusion sweep returns: the grid of positions, the class scores, the feature totals.

:class:`OcclusionResult` groups its parts: ``grid`` (:class:`OcclusionGrid`, always),
``classifier`` (:class:`ClassScores`, None for a model without a classifier head) and
``feature`` (:class:`FeatureTotals`, None when no feature map was asked for). The flat names of
earlier releases (``result.probability``, ``result.feature_total``, ``result.grid_shape``, ...)
still read the same values (None where the part is missing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from deconv.occlusion.grid import window_average

__all__ = ["ClassScores", "FeatureTotals", "OcclusionGrid", "OcclusionResult"]


@dataclass(frozen=True)
class OcclusionGrid:
    """The occluder positions, row-major on a ``rows x cols`` grid.

    Attributes:
        boxes (torch.Tensor): long ``[rows * cols, 4]`` windows ``(y0, y1, x0, x1)`` (end
            exclusive, clipped at the border).
        shape (tuple[int, int]): ``(rows, cols)``.
        image_size (tuple[int, int]): ``(H, W)`` of the model input.
        patch (tuple[int, int]): occluder size.
        stride (tuple[int, int]): step between positions.
    """

    boxes: torch.Tensor
    shape: tuple[int, int]
    image_size: tuple[int, int]
    patch: tuple[int, int]
    stride: tuple[int, int]

    def box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """The window ``(y0, y1, x0, x1)`` of grid cell ``(row, col)``."""
        return tuple(self.boxes[row * self.shape[1] + col].tolist())

    def pixel_map(self, grid_values: torch.Tensor) -> torch.Tensor:
        """Average any ``[rows, cols]`` grid onto pixels ``[H, W]`` (NaN where uncovered)."""
        return window_average(grid_values.reshape(-1), self.boxes, *self.image_size)


@dataclass(frozen=True)
class ClassScores:
    """The classifier's side of a sweep.

    Attributes:
        target (int): the class whose probability is mapped.
        target_name (str | None): its name, when the model has categories.
        base_probability (float): ``p(target)`` of the unoccluded image.
        base_label (int): top class of the unoccluded image.
        probability (torch.Tensor): ``[rows, cols]`` probability of ``target``.
        label (torch.Tensor): ``[rows, cols]`` most probable class index.
        label_probability (torch.Tensor): ``[rows, cols]`` its probability.
        drop_map (torch.Tensor): float64 ``[H, W]``: per pixel, the mean over the windows
            covering it of ``p(target | image) - p(target | occluded)`` (captum's ``Occlusion``
            convention on a softmax output); NaN where no window covers it.
        categories (list[str] | None): class names.
    """

    target: int
    target_name: str | None
    base_probability: float
    base_label: int
    probability: torch.Tensor
    label: torch.Tensor
    label_probability: torch.Tensor
    drop_map: torch.Tensor
    categories: list[str] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class FeatureTotals:
    """One feature map's side of a sweep.

    Attributes:
        layer (str): module name of the feature map's layer.
        channel (int): the feature map.
        total (torch.Tensor): ``[rows, cols]`` sum over space of the map of the occluded image.
        base_total (float): the same total for the unoccluded image.
        peak (tuple[int, int] | None): ``(y, x)`` of the map's strongest activation in the
            unoccluded image (in that layer's grid).
        model_name (str): which model gave the map.
    """

    layer: str
    channel: int
    total: torch.Tensor
    base_total: float
    peak: tuple[int, int] | None
    model_name: str


# Flat names of earlier releases -> (part, attribute); read-only.
_FLAT = {
    "boxes": ("grid", "boxes"), "grid_shape": ("grid", "shape"),
    "image_size": ("grid", "image_size"), "patch": ("grid", "patch"),
    "stride": ("grid", "stride"), "method": (None, "engine"),
    **{name: ("classifier", name) for name in (
        "target", "target_name", "base_probability", "base_label", "probability", "label",
        "label_probability", "drop_map", "categories")},
    "feature_total": ("feature", "total"), "feature_layer": ("feature", "layer"),
    "feature_channel": ("feature", "channel"), "base_feature_total": ("feature", "base_total"),
    "feature_peak": ("feature", "peak"), "feature_model_name": ("feature", "model_name"),
}


@dataclass(frozen=True)
class OcclusionResult:
    """Everything a sweep measured.

    Attributes:
        grid (OcclusionGrid): the occluder positions.
        fill (str): what the occluder was filled with.
        engine (str): the engine(s) that computed it.
        model_name (str): which model gave the probabilities.
        classifier (ClassScores | None): probabilities, labels and the drop map; None for a
            model without a classifier head.
        feature (FeatureTotals | None): the feature map's totals; None when not asked for.

    The flat names of earlier releases read the same values: ``boxes``, ``grid_shape``,
    ``image_size``, ``patch``, ``stride``, ``method`` (= ``engine``), ``target``,
    ``target_name``, ``base_probability``, ``base_label``, ``probability``, ``label``,
    ``label_probability``, ``drop_map``, ``categories``, ``feature_total``, ``feature_layer``,
    ``feature_channel``, ``base_feature_total``, ``feature_peak``, ``feature_model_name``.
    """

    grid: OcclusionGrid
    fill: str
    engine: str
    model_name: str = ""
    classifier: ClassScores | None = None
    feature: FeatureTotals | None = None

    def box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """The window ``(y0, y1, x0, x1)`` of grid cell ``(row, col)``."""
        return self.grid.box(row, col)

    def label_name(self, index: int) -> str:
        """Class name of ``index`` (its number when the model has no categories)."""
        categories = self.classifier.categories if self.classifier else None
        return categories[index] if categories else str(index)

    def pixel_map(self, grid_values: torch.Tensor) -> torch.Tensor:
        """Average any ``[rows, cols]`` grid (e.g. ``feature.total``) onto pixels ``[H, W]``."""
        return self.grid.pixel_map(grid_values)

    def summary(self) -> dict:
        """A JSON-ready dict of the settings and the headline numbers."""
        g = self.grid
        out = {"model": self.model_name,
               "feature_model": self.feature.model_name if self.feature else None,
               "patch": list(g.patch), "stride": list(g.stride), "fill": self.fill,
               "grid": list(g.shape), "image_size": list(g.image_size), "engine": self.engine}
        if self.classifier is not None:
            c = self.classifier
            low = int(c.probability.argmin())
            out.update(target=c.target, target_name=c.target_name,
                       base_probability=c.base_probability,
                       min_probability=float(c.probability.min()),
                       min_probability_box=list(g.boxes[low].tolist()),
                       labels={self.label_name(int(i)): int((c.label == i).sum())
                               for i in c.label.unique()})
        if self.feature is not None:
            f = self.feature
            out.update(feature_layer=f.layer, feature_channel=f.channel,
                       base_feature_total=f.base_total,
                       min_feature_total=float(f.total.min()),
                       min_feature_box=list(g.boxes[int(f.total.argmin())].tolist()))
        return out

    def record(self) -> dict:
        """:meth:`summary` plus the grids (``probability``, ``label``, ``feature_total``) as
        lists: what ``deconv occlude`` and ``fig7_occlusion.py`` write to JSON."""
        out = self.summary()
        grids = {"probability": self.classifier.probability if self.classifier else None,
                 "label": self.classifier.label if self.classifier else None,
                 "feature_total": self.feature.total if self.feature else None}
        out.update({key: value.tolist() for key, value in grids.items() if value is not None})
        return out


def _flat_property(part: str | None, attribute: str) -> property:
    def read(self: OcclusionResult):
        owner = self if part is None else getattr(self, part)
        return None if owner is None else getattr(owner, attribute)

    return property(read, doc=f"``{part + '.' if part else ''}{attribute}`` (flat name).")


for _name, (_part, _attribute) in _FLAT.items():
    setattr(OcclusionResult, _name, _flat_property(_part, _attribute))
del _name, _part, _attribute
