"""Distinct top-k (no two kept entries of one source overlap by more than max_iou) against a
brute-force version: every activation in float64, sorted, greedy selection in plain Python."""

from __future__ import annotations

import copy

import pytest
import torch
from integer_models import IntNet

from deconv.mining import SampleCrops, distinct_top_k, mine_top_k
from deconv.mining.distinct import box_iou, field_regions
from deconv.receptive_field import receptive_field

LAYERS = ["conv1", "relu1", "pool", "relu2"]  # fields 3, 3, 4, 8 px on 8 px images


def images(n: int = 30, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 3, (n, 3, 8, 8), generator=g).float()
    x[7] = x[3]  # duplicates: exact ties
    return x


def to_source(ids: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is a crop of "photo" i // 5 shifted right by 2 * (i % 5) px (overlapping)."""
    shift = (2 * (ids % 5)).double()
    return ids // 5, boxes.double() + torch.stack([0 * shift, shift, 0 * shift, shift], 1)


def python_iou(a, b, measure: str = "iou") -> float:
    h = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    w = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area_a = max(0, a[2] - a[0]) * max(0, a[3] - a[1])
    area_b = max(0, b[2] - b[0]) * max(0, b[3] - b[1])
    denominator = area_a + area_b - h * w if measure == "iou" else min(area_a, area_b)
    return h * w / denominator if denominator > 0 else 0.0


def brute_force(model, x, layer: str, k: int, max_iou: float, measure: str = "iou"
                ) -> list[list[tuple]]:
    """(value, image, position) per channel: spatial max per image (first on ties), sorted by
    (value desc, image, position), then greedy suppression with Python IoUs."""
    model = copy.deepcopy(model).double()
    out = []
    handle = model.get_submodule(layer).register_forward_hook(
        lambda m, i, o: out.append(o.detach().clone()))
    with torch.no_grad():
        for image in x:
            model(image[None].double())
    handle.remove()
    maps = torch.cat(out)
    field = receptive_field(IntNet(), layer, (8, 8))
    width = maps.shape[-1]
    rows = []
    for c in range(maps.shape[1]):
        cands = []
        for i in range(maps.shape[0]):
            flat = maps[i, c].flatten().tolist()
            p = max(range(len(flat)), key=lambda q, f=flat: (f[q], -q))
            cands.append((flat[p], i, p))
        cands.sort(key=lambda t: (-t[0], t[1], t[2]))
        kept = []
        for value, i, p in cands:
            top, left, bottom, right = field.box(p // width, p % width)
            group, box = i // 5, (top, left + 2 * (i % 5), bottom, right + 2 * (i % 5))
            if all(g != group or python_iou(b, box, measure) <= max_iou for g, b, _ in kept):
                kept.append((group, box, (value, i, p)))
            if len(kept) == k:
                break
        rows.append([entry for _, _, entry in kept])
    return rows


def as_lists(result, layer):
    return [[(float(v), int(i), int(p)) for v, i, p in zip(
        result.values[layer][c], result.image_ids[layer][c], result.positions[layer][c])
        if i >= 0] for c in range(result.channels(layer))]


@pytest.mark.parametrize("max_iou,measure", [(0.0, "iou"), (0.3, "iou"), (0.5, "iou"),
                                             (0.5, "min")])
def test_distinct_equals_brute_force(max_iou, measure):
    model, x = IntNet(), images()
    mined = mine_top_k(model, x, LAYERS, k=len(x), batch_size=7, progress=False)
    regions = field_regions(model, (8, 8), to_source)
    result = distinct_top_k(mined, regions, k=4, max_iou=max_iou, measure=measure)
    suppressed = 0
    for layer in LAYERS:
        expected = brute_force(model, x, layer, 4, max_iou, measure)
        assert as_lists(result, layer) == expected, layer
        plain = as_lists(mined, layer)
        suppressed += sum(row[:4] != exp for row, exp in zip(plain, expected))
    assert suppressed > 0, "the test data should make the filter act"
    assert result.k == 4 and result.meta["distinct"]["max_iou"] == max_iou


def test_spare_candidates_suffice_or_are_reported():
    model, x = IntNet(), images()
    regions = field_regions(model, (8, 8), to_source)
    full = distinct_top_k(mine_top_k(model, x, LAYERS, k=len(x), progress=False), regions, k=3)
    few = distinct_top_k(mine_top_k(model, x, LAYERS, k=6, progress=False), regions, k=3)
    for layer in LAYERS:
        for a, b in zip(as_lists(full, layer), as_lists(few, layer)):
            if len(b) == 3:
                assert a == b  # finished within the candidates: same as with all of them
            else:  # ran out: counted as short
                assert few.meta["distinct"]["short"][layer] > 0
        # kept entries of one source never overlap by more than max_iou
        groups, boxes = regions(layer, few.image_ids[layer], few.ys(layer), few.xs(layer))
        for c in range(few.channels(layer)):
            live = few.image_ids[layer][c] >= 0
            g, b = groups[c][live], boxes[c][live]
            iou = box_iou(b[:, None], b[None, :])
            same = (g[:, None] == g[None, :]) & ~torch.eye(len(g), dtype=torch.bool)
            assert not bool((iou[same] > 0.5).any())


def test_box_iou_matches_python():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 10, (50, 2), generator=g)
    a = torch.cat([a, a + torch.randint(0, 6, (50, 2), generator=g)], 1)  # some empty boxes
    b = a.flip(0)
    for measure in ("iou", "min"):
        expected = [python_iou(p.tolist(), q.tolist(), measure) for p, q in zip(a, b)]
        assert box_iou(a, b, measure).tolist() == pytest.approx(expected, abs=1e-12)
    inner, outer = torch.tensor([2, 2, 4, 4]), torch.tensor([0, 0, 8, 8])
    assert float(box_iou(inner, outer)) == 4 / 64 and float(box_iou(inner, outer, "min")) == 1


def test_bad_arguments_say_what_to_do():
    model, x = IntNet(), images(10)
    mined = mine_top_k(model, x, ["conv1"], k=3, progress=False)
    regions = field_regions(model, (8, 8))
    with pytest.raises(ValueError, match="mine more candidates"):
        distinct_top_k(mined, regions, k=4)
    with pytest.raises(ValueError, match="max_iou"):
        distinct_top_k(mined, regions, k=2, max_iou=1.0)


def test_sample_crops_source_boxes_map_a_whole_crop_to_its_box():
    crops = SampleCrops(lambda im: torch.zeros(3, 32, 32), names=["coffee"], scales=(1.0, 0.5),
                        size=32)
    ids = torch.arange(len(crops))
    whole = torch.tensor([[0.0, 0.0, 32.0, 32.0]]).expand(len(crops), 4)
    groups, boxes = crops.source_boxes(ids, whole)
    assert groups.tolist() == [0] * len(crops)
    for i in range(len(crops)):
        left, top, right, bottom = crops.describe(i)["box_ltrb"]
        assert boxes[i].tolist() == [top, left, bottom, right]
