"""Display helpers: scaling projections for display and cropping to receptive fields."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from deconv.plots import crop_to_receptive_field, normalize_for_display, to_display_image


def test_symmetric_per_image_and_shared_scales():
    maps = torch.zeros(2, 1, 2, 2)
    maps[0, 0, 0, 0], maps[0, 0, 1, 1] = 2.0, -1.0  # peak |x| = 2
    maps[1, 0, 0, 1] = 0.5  # peak 0.5
    per_image = normalize_for_display(maps, "image")
    # image 0: 0.5 + x / 4 -> 1.0 and 0.25; image 1: 0.5 + x / 1 -> 1.0
    assert per_image[0, 0, 0, 0] == 1.0 and per_image[0, 0, 1, 1] == 0.25
    assert per_image[1, 0, 0, 1] == 1.0 and per_image[1, 0, 0, 0] == 0.5
    shared = normalize_for_display(maps, "shared")
    # one peak (2) for both: image 1's 0.5 -> 0.5 + 0.5 / 4 = 0.625
    assert shared[1, 0, 0, 1] == 0.625 and shared[0, 0, 0, 0] == 1.0


def test_minmax_and_all_zero_maps_never_divide_by_zero():
    maps = torch.zeros(3, 3, 4, 4)
    maps[1] = torch.arange(48.0).reshape(3, 4, 4)
    for scale in ("image", "shared"):
        for method in ("symmetric", "minmax"):
            out = normalize_for_display(maps, scale, method)
            assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert (normalize_for_display(maps, "image")[0] == 0.5).all()
    assert (normalize_for_display(maps, "image", "minmax")[0] == 0).all()
    mm = normalize_for_display(maps, "image", "minmax")[1]
    assert mm.min() == 0 and mm.max() == 1
    single = normalize_for_display(torch.zeros(3, 2, 2))
    assert single.shape == (3, 2, 2) and (single == 0.5).all()
    with pytest.raises(ValueError, match="scale"):
        normalize_for_display(maps, "global")


def test_percentile_clips_the_few_strongest_pixels():
    maps = torch.zeros(1, 1, 10, 10)
    maps[0, 0, 0, :] = torch.arange(1.0, 11.0)  # |x| values 0 (x90) and 1..10
    out = normalize_for_display(maps, percentile=95)
    # the 95th percentile of the 100 values (90 zeros, then 1..10) is 5.05 (linear
    # interpolation between the 95th and 96th sorted values, 5 and 6): 5.05 -> 1.0,
    # 1 -> 0.5 + 1 / 10.1, 10 is clipped at 1
    torch.testing.assert_close(out[0, 0, 0, 0], torch.tensor(0.5 + 1 / 10.1))
    assert out[0, 0, 0, 9] == 1.0 and out[0, 0, 0, 4] < 1.0
    assert (normalize_for_display(torch.zeros(2, 1, 3, 3), percentile=99) == 0.5).all()
    with pytest.raises(ValueError, match="percentile"):
        normalize_for_display(maps, percentile=0)


def test_to_display_image_layout():
    assert to_display_image(torch.rand(3, 5, 7)).shape == (5, 7, 3)
    assert to_display_image(torch.rand(1, 5, 7)).shape == (5, 7)


@dataclass
class HandField:
    """A receptive-field stand-in: size 5, jump 2, start -2 on both axes, 10x10 input."""

    size: tuple = (5, 5)
    jump: tuple = (2, 2)
    start: tuple = (-2, -2)
    input_size: tuple = (10, 10)

    def box(self, y, x, clip=True):
        top, left = self.start[0] + y * self.jump[0], self.start[1] + x * self.jump[1]
        bottom, right = top + self.size[0], left + self.size[1]
        if clip:
            top, left = max(top, 0), max(left, 0)
            bottom, right = min(bottom, 10), min(right, 10)
        return top, left, bottom, right


def test_crop_with_hand_made_field():
    image = torch.arange(100.0).reshape(1, 10, 10)
    field = HandField()
    # unit (2, 3): rows -2 + 4 = 2 .. 6, columns -2 + 6 = 4 .. 8
    assert torch.equal(crop_to_receptive_field(image, field, 2, 3), image[:, 2:7, 4:9])
    # unit (0, 0): rows/cols -2 .. 2 -> clipped to 0 .. 2 (3x3); padded: 5x5 with fill
    assert crop_to_receptive_field(image, field, 0, 0).shape == (1, 3, 3)
    padded = crop_to_receptive_field(image, field, 0, 0, pad=True, fill=-1.0)
    assert padded.shape == (1, 5, 5)
    assert (padded[:, :2] == -1).all() and (padded[:, :, :2] == -1).all()
    assert torch.equal(padded[:, 2:, 2:], image[:, :3, :3])
    with pytest.raises(ValueError, match="input size"):
        crop_to_receptive_field(torch.zeros(1, 8, 8), field, 0, 0)


def test_crop_with_the_receptive_field_module_contains_the_projection():
    from torch import nn

    from deconv.deconvnet import Deconvnet
    from deconv.receptive_field import receptive_field

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
                          nn.Conv2d(4, 4, 3), nn.ReLU())
    images = torch.randn(1, 3, 24, 24)
    engine = Deconvnet(model)
    top = engine.top_units(images, "4", 3)
    projections = engine.project(images, "4", top.units)
    field = receptive_field(model, "4", 24)
    for (_, _, y, x), projection in zip(top.units.tolist(), projections):
        inside = crop_to_receptive_field(projection, field, y, x)
        # All of a unit's projection lies inside its receptive field.
        torch.testing.assert_close(inside.abs().sum(), projection.abs().sum())
        assert inside.abs().sum() > 0
        assert crop_to_receptive_field(projection, field, y, x, pad=True).shape[-2:] == \
            field.size
