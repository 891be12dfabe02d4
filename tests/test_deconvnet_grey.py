"""Projections onto a grey picture copied into RGB equal those of the one-channel model."""

from __future__ import annotations

import torch
from torch import nn

from deconv.deconvnet import Deconvnet
from deconv.deconvnet.grey import GreyInputProjections


def nets() -> tuple[nn.Sequential, nn.Sequential]:
    torch.manual_seed(0)
    rgb = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
                        nn.Conv2d(4, 5, 3), nn.ReLU()).double()
    grey = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
                         nn.Conv2d(4, 5, 3), nn.ReLU()).double()
    grey.load_state_dict({k: (v.sum(1, keepdim=True) if k == "0.weight" else v)
                          for k, v in rgb.state_dict().items()})
    return rgb, grey


def test_grey_projection_equals_the_one_channel_model():
    rgb, grey = nets()
    g = torch.rand(2, 1, 12, 12, dtype=torch.float64)
    units = torch.tensor([[0, 1, 2, 1], [1, 4, 0, 2], [1, 0, 1, 1]])
    engine = GreyInputProjections(Deconvnet(rgb))
    got = engine.project(g.expand(-1, 3, -1, -1), "4", units)
    want = Deconvnet(grey).project(g, "4", units)
    assert got.shape == (3, 3, 12, 12)
    assert torch.allclose(got, want.expand_as(got), atol=1e-12)
    assert float(want.abs().sum()) > 0
    maps = engine.project_feature_map(g[:1].expand(-1, 3, -1, -1), "4", 2)
    assert torch.allclose(maps, Deconvnet(grey).project_feature_map(g[:1], "4", 2)
                          .expand_as(maps), atol=1e-12)
