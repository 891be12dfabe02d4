"""Invariance transforms and curves: identities, exact shifts, rot90, a ramp under zoom."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deconv.invariance import (
    invariance_curves,
    rotate_image,
    scale_image,
    transform_image,
    translate_vertical,
)


def picture(shape=(2, 3, 12, 12)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("kind,amount", [("translate", 0), ("scale", 1.0), ("rotate", 0.0),
                                         ("rotate", 360.0)])
def test_identity_at_zero(kind, amount):
    x = picture()
    assert torch.equal(transform_image(x, kind, amount), x)


def test_translation_is_an_exact_shift_with_zero_fill():
    x = picture()
    down = translate_vertical(x, 3)
    assert torch.equal(down[..., 3:, :], x[..., :-3, :]) and down[..., :3, :].eq(0).all()
    up = translate_vertical(x, -5)
    assert torch.equal(up[..., :-5, :], x[..., 5:, :]) and up[..., -5:, :].eq(0).all()
    assert translate_vertical(x, 40).eq(0).all()
    with pytest.raises(TypeError, match="whole number"):
        translate_vertical(x, 1.5)


def test_rotation_by_90_matches_rot90_counter_clockwise():
    x = picture()
    torch.testing.assert_close(rotate_image(x, 90), torch.rot90(x, 1, dims=(-2, -1)),
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(rotate_image(x[0], -90), torch.rot90(x[0], -1, dims=(-2, -1)),
                               rtol=0, atol=1e-12)
    # a rotationally symmetric blob centred on the image does not change
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    blob = torch.exp(-((yy - 15.5) ** 2 + (xx - 15.5) ** 2) / 40).double()[None]
    torch.testing.assert_close(rotate_image(blob, 37), blob, rtol=0, atol=0.01)


def test_zoom_of_a_ramp_halves_its_slope_and_shrink_has_zero_border():
    ramp = torch.arange(16, dtype=torch.float64).view(1, 1, 16).expand(1, 16, 16).clone()
    zoomed = scale_image(ramp, 2.0)
    half = torch.full((5,), 0.5, dtype=torch.float64)
    torch.testing.assert_close(zoomed[0, 8, 5:11].diff(), half)
    # the centre stays put: output (7.5) reads input 7.5
    assert zoomed[0, 8, 7:9].mean().item() == pytest.approx(7.5)
    shrunk = scale_image(ramp, 0.5)
    assert shrunk[0, 0].abs().sum() == 0 and shrunk[0, :, 0].abs().sum() == 0
    with pytest.raises(ValueError, match="positive"):
        scale_image(ramp, 0)
    with pytest.raises(ValueError, match="unknown transform"):
        transform_image(ramp, "shear", 1)


def test_invariance_curves_zero_at_identity_and_matches_manual(model_guard):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).double().eval()
    guard = model_guard(model)
    x = picture()
    curves = invariance_curves(model, x, "rotate", [0, 45, 90], layers=["1", "3"])
    assert curves.layers == ["1", "3"] and curves.distances["1"].shape == (2, 3)
    assert curves.distances["1"][:, 0].eq(0).all() and curves.distances["3"][:, 0].eq(0).all()
    with torch.no_grad():
        p0 = torch.softmax(model(x), dim=1)
        moved = rotate_image(x, 45)
        p = torch.softmax(model(moved), dim=1)
        first = (model[1](model[0](moved)) - model[1](model[0](x))).flatten(1).norm(dim=1)
    assert curves.targets == p0.argmax(dim=1).tolist()
    torch.testing.assert_close(curves.probability[:, 1], p[[0, 1], curves.targets])
    torch.testing.assert_close(curves.distances["1"][:, 1], first)
    guard.check()
    with pytest.raises(ValueError, match="one target per image"):
        invariance_curves(model, x, "scale", [1.0], layers=["1"], targets=[0])
