"""Top-k entries that are distinct regions: drop a candidate that overlaps a better one.

Mining keeps one entry per image (the spatial max), but two *images* can show the same pixels:
overlapping crops of one photo (:class:`deconv.mining.SampleCrops`) put the same region into a
channel's top 9 several times. :func:`distinct_top_k` post-filters a result mined with more
candidates than needed (``mine_top_k(..., k=k * extra)``): per channel it walks the candidates
best first and keeps one unless it comes from the same source (e.g. the same photo) as an entry
already kept and their boxes (e.g. the units' receptive fields in the photo's coordinates)
overlap by more than ``max_iou`` (intersection over union); it stops at ``k``. This is the
greedy non-maximum suppression of object detection, applied to mined activations.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from deconv.errors import InvalidArgumentError
from deconv.mining.result import TopKResult

__all__ = ["box_iou", "distinct_top_k", "distinct_fields", "field_regions", "RegionFn"]

#: ``regions(layer, image_ids, ys, xs) -> (groups, boxes)``: for ``[C, M]`` entries, the
#: source each entry comes from (``[C, M]`` int64; entries of different sources never
#: conflict) and its box ``[C, M, 4]`` as ``(top, left, bottom, right)`` in that source's
#: coordinates (bottom/right exclusive).
RegionFn = Callable[[str, torch.Tensor, torch.Tensor, torch.Tensor],
                    tuple[torch.Tensor, torch.Tensor]]


OVERLAPS = ("iou", "min")


def box_iou(a: torch.Tensor, b: torch.Tensor, measure: str = "iou") -> torch.Tensor:
    """Overlap of boxes ``(top, left, bottom, right)`` (broadcasting).

    Args:
        a (torch.Tensor): ``[..., 4]`` boxes, bottom/right exclusive.
        b (torch.Tensor): ``[..., 4]`` boxes, broadcastable against ``a``.
        measure (str): ``"iou"``: intersection over union; ``"min"``: intersection over the
            smaller box's area (1 when one box lies inside the other, however small).

    Returns:
        torch.Tensor: float64 overlap in [0, 1]; 0 where the denominator is empty.
    """
    if measure not in OVERLAPS:
        raise InvalidArgumentError(f"unknown overlap measure {measure!r}; choose one of {OVERLAPS}")
    a, b = a.double(), b.double()
    height = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(0)
    width = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(0)
    inter = height * width
    area_a = (a[..., 2] - a[..., 0]).clamp(0) * (a[..., 3] - a[..., 1]).clamp(0)
    area_b = (b[..., 2] - b[..., 0]).clamp(0) * (b[..., 3] - b[..., 1]).clamp(0)
    denominator = area_a + area_b - inter if measure == "iou" else torch.minimum(area_a, area_b)
    return torch.where(denominator > 0, inter / denominator.clamp(min=1e-300),
                       torch.zeros_like(denominator))


def field_regions(model, input_size: tuple[int, int],
                  to_source: Callable[[torch.Tensor, torch.Tensor],
                                      tuple[torch.Tensor, torch.Tensor]] | None = None
                  ) -> RegionFn:
    """A :data:`RegionFn` giving each entry's receptive-field box (clipped to the input).

    Args:
        model (nn.Module | LoadedModel): the mined network.
        input_size (tuple[int, int]): ``(H, W)`` of the mined inputs.
        to_source (Callable | None): ``(image_ids [N], boxes [N, 4]) -> (groups [N], boxes
            [N, 4])`` mapping input boxes to the source's coordinates (e.g.
            :meth:`deconv.mining.SampleCrops.source_boxes`). Without it every image is its
            own source (then only entries of one image can conflict, which never happens with
            ``per_image=1``).

    Returns:
        RegionFn: the region function for :func:`distinct_top_k`.
    """
    from deconv.receptive_field import receptive_field

    fields: dict[str, object] = {}

    def regions(layer: str, ids: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if layer not in fields:
            fields[layer] = receptive_field(model, layer, tuple(input_size))
        field = fields[layer]
        height, width = field.input_size
        top = (field.start[0] + ys * field.jump[0]).clamp(0, height)
        left = (field.start[1] + xs * field.jump[1]).clamp(0, width)
        bottom = (field.start[0] + ys * field.jump[0] + field.size[0]).clamp(0, height)
        right = (field.start[1] + xs * field.jump[1] + field.size[1]).clamp(0, width)
        boxes = torch.stack([top, left, bottom, right], -1).double()
        if to_source is None:
            return ids.clone(), boxes
        groups, mapped = to_source(ids.reshape(-1).clamp(min=0), boxes.reshape(-1, 4))
        return groups.reshape(ids.shape), mapped.reshape(*ids.shape, 4).double()

    return regions


def distinct_top_k(result: TopKResult, regions: RegionFn, k: int = 9,
                   max_iou: float = 0.5, measure: str = "iou") -> TopKResult:
    """Keep per channel the best ``k`` entries no two of which overlap by more than ``max_iou``.

    Greedy, best first (the result's order: value desc, image id, position): a candidate is
    kept unless an entry already kept has the same source group and an IoU above
    ``max_iou`` with it. Mine with spare candidates (``mine_top_k(..., k=k * 8)``) so that
    ``k`` survive; channels that run out are reported in ``meta["distinct"]``.

    Args:
        result (TopKResult): mined with ``result.k >= k`` candidates per channel.
        regions (RegionFn): source group and box of every entry (see :func:`field_regions`).
        k (int): entries to keep per channel.
        max_iou (float): largest overlap allowed between two kept entries of one source, in
            [0, 1).
        measure (str): ``"iou"`` (intersection over union) or ``"min"`` (intersection over
            the smaller box: also rejects a small crop lying inside a larger one, which IoU
            lets through when the areas differ by more than 2x); see :func:`box_iou`.

    Returns:
        TopKResult: ``k`` entries per channel (empty slots padded as in mining), the same
        layers and counts; ``meta["distinct"]`` records ``max_iou``, the candidates per
        channel, and per layer the channels left with fewer than ``k`` entries although
        their candidate list was full (``short``: mine more candidates).

    Raises:
        ValueError: ``k`` larger than the mined ``k``, or ``max_iou`` outside [0, 1).
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= result.k:
        raise InvalidArgumentError(
            f"k must be an int in [1, {result.k}] (the mined k), got {k!r}; mine "
            f"more candidates (mine_top_k(..., k=k * 8)) to keep more")
    if not 0 <= max_iou < 1:
        raise InvalidArgumentError(f"max_iou must be in [0, 1), got {max_iou!r}")
    if measure not in OVERLAPS:
        raise InvalidArgumentError(f"unknown overlap measure {measure!r}; choose one of {OVERLAPS}")
    out = TopKResult(list(result.layers), k, result.per_image, map_sizes=dict(result.map_sizes),
                     images_seen=result.images_seen, skipped_ids=list(result.skipped_ids),
                     meta=dict(result.meta))
    short: dict[str, int] = {}
    for layer in result.values:
        values, ids, pos = (result.values[layer], result.image_ids[layer],
                            result.positions[layer])
        valid = ids >= 0
        groups, boxes = regions(layer, ids, result.ys(layer), result.xs(layer))
        conflict = ((groups[:, :, None] == groups[:, None, :])
                    & (box_iou(boxes[:, :, None], boxes[:, None, :], measure) > max_iou)
                    & valid[:, :, None] & valid[:, None, :])
        channels, candidates = ids.shape
        keep = torch.zeros(channels, candidates, dtype=torch.bool)
        count = torch.zeros(channels, dtype=torch.long)
        for j in range(candidates):
            blocked = (keep[:, :j] & conflict[:, :j, j]).any(dim=1)
            take = valid[:, j] & ~blocked & (count < k)
            keep[:, j] = take
            count += take.long()
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :k]
        kept = keep.gather(1, order)
        out.values[layer] = torch.where(kept, values.gather(1, order), -float("inf"))
        out.image_ids[layer] = torch.where(kept, ids.gather(1, order), -1)
        out.positions[layer] = torch.where(kept, pos.gather(1, order), -1)
        short[layer] = int(((count < k) & valid[:, -1]).sum())
    out.meta["distinct"] = {"max_iou": max_iou, "measure": measure, "candidates": result.k,
                            "short": short}
    return out


def distinct_fields(result: TopKResult, model, input_size: tuple[int, int], k: int,
                    to_source: Callable | None = None, max_iou: float = 0.5,
                    measure: str = "iou") -> TopKResult:
    """:func:`distinct_top_k` with receptive-field boxes (:func:`field_regions`): the step
    after ``mine_top_k(..., k=k * candidates)`` in Fig. 2 and in the atlas.

    Args:
        result (TopKResult): mined with spare candidates.
        model (nn.Module | LoadedModel): the mined network.
        input_size (tuple[int, int]): ``(H, W)`` of the mined inputs.
        k (int): entries to keep per channel.
        to_source (Callable | None): maps boxes to the source's coordinates (see
            :func:`field_regions`).
        max_iou (float): largest overlap allowed (see :func:`distinct_top_k`).
        measure (str): ``"iou"`` or ``"min"``.

    Returns:
        TopKResult: as :func:`distinct_top_k`.
    """
    regions = field_regions(model, tuple(input_size), to_source)
    return distinct_top_k(result, regions, k=k, max_iou=max_iou, measure=measure)
