"""The inside/outside occlusion statistic on a planted-object model: a hand-built classifier
whose output depends only on a known region must be found by the statistic, and a mask put
elsewhere must show the opposite."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deconv.occlusion import occlusion_sweep
from deconv.occlusion.localization import (
    box_coverage,
    box_mask,
    inside_outside_drop,
    inside_outside_of,
    summarize_inside_outside,
)

SIDE = 32
OBJECT = (4, 12, 6, 14)  # rows 4..11, cols 6..13: the only pixels the model looks at


class Planted(nn.Module):
    """Logits (m, -m) with m the mean of the OBJECT region: nothing else matters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y0, y1, x0, x1 = OBJECT
        m = x[:, :, y0:y1, x0:x1].mean(dim=(1, 2, 3))
        return torch.stack([m, -m], dim=1)


def region_mask(y0, y1, x0, x1) -> torch.Tensor:
    mask = torch.zeros(SIDE, SIDE, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def image(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.5 + torch.rand(3, SIDE, SIDE, generator=g)  # bright everywhere: no easy cue


def test_box_coverage_matches_counting():
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(20, 17, generator=g) > 0.6
    tops = torch.randint(0, 20, (40, 2), generator=g).sort(dim=1).values
    lefts = torch.randint(0, 17, (40, 2), generator=g).sort(dim=1).values
    boxes = torch.stack([tops[:, 0], tops[:, 1], lefts[:, 0], lefts[:, 1]], 1)
    expected = []
    for y0, y1, x0, x1 in boxes.tolist():
        area = (y1 - y0) * (x1 - x0)
        expected.append(float(mask[y0:y1, x0:x1].sum()) / area if area else 0.0)
    assert box_coverage(boxes, mask).tolist() == pytest.approx(expected, abs=1e-12)


def test_box_mask_takes_pixel_centres():
    mask = box_mask([1.0, 2.0, 3.6, 4.0], 5, 6)  # x0 y0 x1 y1
    assert mask.nonzero().tolist() == [[2, 1], [2, 2], [2, 3], [3, 1], [3, 2], [3, 3]]


def test_planted_object_is_found_and_a_wrong_mask_is_not():
    model, found, wrong = Planted().eval(), [], []
    for seed in range(3):
        result = occlusion_sweep(model, image(seed), patch=6, stride=3, fill=0.0,
                                 target=0, progress=False)
        right = inside_outside_of(result, region_mask(*OBJECT))
        assert right.outside_drop == pytest.approx(0.0, abs=1e-6)  # off the region: no change
        assert right.inside_drop > 0.05 and right.object_hurts_more
        found.append(right)
        elsewhere = inside_outside_of(result, region_mask(20, 30, 20, 30))
        assert elsewhere.inside_drop == pytest.approx(0.0, abs=1e-6)
        assert elsewhere.outside_drop > 1e-3
        wrong.append(elsewhere)
    summary = summarize_inside_outside(found + [None])
    assert summary["images"] == 3 and summary["left_out"] == 1
    assert summary["fraction_object_hurts_more"] == 1.0
    assert summary["difference_ci95"][0] > 0
    assert summarize_inside_outside(wrong)["fraction_object_hurts_more"] == 0.0


def test_no_background_position_gives_none_and_bad_thresholds_raise():
    boxes = torch.tensor([[0, 4, 0, 4], [2, 6, 2, 6]])
    full = torch.ones(8, 8, dtype=torch.bool)
    assert inside_outside_drop(boxes, torch.tensor([0.1, 0.2]), 0.5, full) is None
    with pytest.raises(ValueError, match="outside < inside"):
        inside_outside_drop(boxes, torch.tensor([0.1, 0.2]), 0.5, full, inside=0.2,
                            outside=0.3)
    with pytest.raises(ValueError, match="probabilities for"):
        inside_outside_drop(boxes, torch.tensor([0.1]), 0.5, full)
