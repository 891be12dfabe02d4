"""Feature maps, sparsity, filter grids and dead-feature-map statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deconv.activations import (
    dead_feature_maps,
    dead_filters,
    feature_maps,
    filter_grid,
    first_conv,
    map_grid,
    sparsity,
)


def small_net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                        nn.Conv2d(6, 4, 3), nn.ReLU(inplace=True))
    with torch.no_grad():
        net[0].bias[0] = -100.0  # channel 0 of layer "1" is dead on any normal input
        net[0].weight[1] = 0.0
        net[0].bias[1] = 0.0  # channel 1: exactly zero everywhere too (weak filter)
    return net


def test_feature_maps_equal_the_truncated_network(model_guard):
    net, image = small_net(), torch.randn(3, 10, 10)
    guard = model_guard(net)
    maps = feature_maps(net, image, "2")
    with torch.no_grad():
        expected = net[:3](image[None])[0]
    torch.testing.assert_close(maps, expected)
    conv = feature_maps(net, image, "0")  # before the inplace ReLU: negatives survive
    assert conv.min() < 0
    guard.check()
    with pytest.raises(ValueError, match="one image"):
        feature_maps(net, torch.zeros(2, 3, 10, 10), "0")


def test_sparsity_hand_case():
    maps = torch.tensor([[[0.0, 1.0], [0.0, 2.0]], [[0.0, 0.0], [0.5, 0.0]]])
    assert sparsity(maps) == 5 / 8
    assert sparsity(maps, atol=0.6) == 6 / 8


def test_map_grid_scales_and_keeps_zero_maps_black():
    maps = torch.stack([torch.zeros(2, 2), torch.tensor([[0.0, 1.0], [2.0, 4.0]]),
                        torch.full((2, 2), 2.0)])
    grid = map_grid(maps, columns=2, pad=1)
    assert grid.shape == (5, 5)
    np.testing.assert_array_equal(grid[0:2, 0:2], 0)  # zero map: black, not NaN
    np.testing.assert_allclose(grid[0:2, 3:5], [[0, .25], [.5, 1]])
    np.testing.assert_allclose(grid[3:5, 0:2], 1)  # per map: its own max
    shared = map_grid(maps, columns=2, normalize="shared")
    np.testing.assert_allclose(shared[3:5, 0:2], .5)  # shared: 2 / 4
    assert np.isnan(grid[2]).all()  # padding row
    with pytest.raises(ValueError, match="per-map"):
        map_grid(maps, normalize="global")


def test_filter_grid_normalizes_each_filter_in_colour():
    weight = torch.randn(5, 3, 3, 3)
    weight[4] = 0.7  # flat filter
    grid = filter_grid(weight, columns=3, pad=1)
    assert grid.shape == (7, 11, 3)
    w0 = weight[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(grid[0:3, 0:3], (w0 - w0.min()) / (w0.max() - w0.min()),
                               rtol=1e-6)
    np.testing.assert_allclose(grid[4:7, 4:7], .5)  # flat -> mid grey
    np.testing.assert_allclose(grid[4:7, 8:11], 1)  # empty slot: white
    name, conv = first_conv(small_net())
    assert name == "0" and conv.out_channels == 6
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        first_conv(nn.Linear(2, 2))


def test_dead_filters_finds_vanished_weights():
    net = small_net()
    stats = dead_filters(net[0].weight)
    assert stats["weak_ids"] == [1] and stats["filters"] == 6


def test_dead_feature_maps_match_a_naive_count(model_guard):
    net = small_net()
    guard = model_guard(net)
    images = torch.randn(40, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    images[7] *= 40  # one extreme image
    stats = dead_feature_maps(net, images, ["1", "4"], batch_size=7, dead_fraction=0.9,
                              progress=False)
    with torch.no_grad():
        for name, stop in (("1", 2), ("4", 5)):
            out = net.double()[:stop](images.double())
            nonzero_per_image = (out.abs() > 0).flatten(2).any(2)  # [N, C]
            zero_images = (~nonzero_per_image).sum(0)
            s = stats[name]
            assert s.images == 40 and s.channels == out.shape[1]
            assert s.dead_ids == (zero_images == 40).nonzero().flatten().tolist()
            assert s.mostly_dead_ids == (zero_images >= 36).nonzero().flatten().tolist()
            assert s.zero_fraction == pytest.approx(float((out == 0).double().mean()), abs=1e-6)
            net.float()
    assert stats["1"].dead_ids[:2] == [0, 1]
    assert stats["1"].to_dict()["dead"] == stats["1"].dead
    guard.check()


def test_tile_images_places_tiles_row_by_row_with_white_gaps():
    from deconv.activations import tile_images

    tiles = torch.zeros(3, 3, 2, 2)
    tiles[1] = 0.5
    tiles[2, 0] = 1.0
    grid = tile_images(tiles, columns=2, gap=1)
    assert grid.shape == (5, 5, 3)
    assert (grid[:2, :2] == 0).all() and (grid[:2, 3:] == 0.5).all()
    assert (grid[3:, :2, 0] == 1).all() and (grid[3:, :2, 1:] == 0).all()
    assert (grid[2] == 1).all() and (grid[:, 2] == 1).all() and (grid[3:, 3:] == 1).all()
