"""Switch transplant: a deconvnet map depends on the image through the max-pool switches only."""

import pytest
import torch
from torch import nn

from deconv.deconvnet import GenericDeconvnet
from deconv.metrics.switches import record_switches, switch_agreement, transplanted_switches


def tiny_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.LocalResponseNorm(3), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 5)).double().eval()


def maps(model, images, target, rule):
    return GenericDeconvnet(model, rule=rule).attribute(images, target)


def test_deconvnet_depends_only_on_switches_guided_does_not():
    model = tiny_net()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 16, 16, generator=g, dtype=torch.float64)
    donor = torch.randn(4, 3, 16, 16, generator=g, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 3])
    own = maps(model, donor, target, "deconvnet")
    with transplanted_switches(model, donor):
        moved = maps(model, x, target, "deconvnet")
        moved_guided = maps(model, x, target, "guided")
    assert torch.allclose(moved, own, atol=1e-12)
    assert not torch.allclose(maps(model, x, target, "deconvnet"), own, atol=1e-6)
    assert not torch.allclose(moved_guided, maps(model, donor, target, "guided"), atol=1e-6)
    assert all(not m._forward_hooks for m in model.modules())


def test_transplant_of_own_switches_changes_nothing_and_agreement():
    model = tiny_net()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2),
                    dtype=torch.float64)
    with transplanted_switches(model, x):
        inside = model(x)
    assert torch.equal(inside, model(x))
    agree = switch_agreement(model, x, x)
    assert set(agree) == {"2", "6"} and all(bool((v == 1).all()) for v in agree.values())
    assert record_switches(model, x)["2"].shape == (2, 6, 8, 8)


def test_errors():
    with pytest.raises(ValueError, match="no nn.MaxPool2d"):
        record_switches(nn.Sequential(nn.Conv2d(1, 1, 1)), torch.zeros(1, 1, 2, 2))
    model = tiny_net()
    with pytest.raises(ValueError, match="donor batch"):
        with transplanted_switches(model, torch.zeros(1, 3, 16, 16, dtype=torch.float64)):
            model(torch.zeros(2, 3, 16, 16, dtype=torch.float64))
    assert all(not m._forward_hooks for m in model.modules())
