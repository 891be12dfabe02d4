"""Batched optima (many channels in one batch) equal the one-channel-at-a-time runs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deconv.optimization import (
    ActivationCapture,
    Tap,
    optima_objectives,
    optimize_channels,
    visualize_feature,
)


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, stride=2),
                         nn.ReLU(), nn.Flatten(), nn.LazyLinear(4)).eval()


@pytest.mark.parametrize("transforms", [None, "standard"])
def test_batched_optima_equal_one_by_one(transforms):
    model = _model()
    model(torch.zeros(1, 3, 20, 20))  # materialise the lazy layer
    before = {k: v.clone() for k, v in model.state_dict().items()}
    channels = [4, 0, 2]
    batched = optimize_channels(model, "3", channels, size=20, steps=6, seed=3,
                                transforms=transforms, chunk=4)
    assert batched.images.shape == (2, 3, 3, 20, 20)
    for j, c in enumerate(channels):
        positive, negative = optima_objectives(model, "3", c)
        for i, objective in enumerate((positive, negative)):
            alone = visualize_feature(model, objective, size=20, steps=6, seed=3,
                                      transforms=transforms)
            torch.testing.assert_close(batched.images[i, j], alone.images[0], atol=2e-5,
                                       rtol=0)
            torch.testing.assert_close(batched.values[i, j], alone.values[0], atol=1e-4,
                                       rtol=1e-4)
    assert batched.seconds_per_channel == pytest.approx(batched.seconds / 3)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_forward_stops_at_the_layer():
    model = _model()
    model(torch.zeros(1, 3, 20, 20))
    calls = []
    model[5].register_forward_hook(lambda *a: calls.append(1))
    with ActivationCapture(model, [Tap("1")]) as capture:
        capture.run(torch.zeros(2, 3, 20, 20))
    assert calls == []  # the head after layer "1" was not computed


def test_batched_optima_bad_input():
    model = _model()
    with pytest.raises(ValueError, match="at least one channel"):
        optimize_channels(model, "1", [])
    with pytest.raises(ValueError, match="signs"):
        optimize_channels(model, "1", [0], signs=("up",))
    with pytest.raises(ValueError, match="chunk"):
        optimize_channels(model, "1", [0], chunk=0)
