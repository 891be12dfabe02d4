"""The explicit deconvnet against a naive loop implementation, captum, and hand arithmetic."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from deconv.deconvnet import Deconvnet, GenericDeconvnet, UnsupportedModuleError

# ----------------------------------------------------------------------------------------------
# A naive float64 deconvnet: loops over positions, written from the paper, no torch ops.


def naive_conv(x, w, b, stride, pad, dil, groups):
    c_in, h, wd = x.shape
    c_out, c_per, k, _ = w.shape
    h_out = (h + 2 * pad - dil * (k - 1) - 1) // stride + 1
    w_out = (wd + 2 * pad - dil * (k - 1) - 1) // stride + 1
    out = np.zeros((c_out, h_out, w_out))
    per_out = c_out // groups
    for o, i, j in itertools.product(range(c_out), range(h_out), range(w_out)):
        g = o // per_out
        total = b[o]
        for ci, di, dj in itertools.product(range(c_per), range(k), range(k)):
            r, c = i * stride - pad + di * dil, j * stride - pad + dj * dil
            if 0 <= r < h and 0 <= c < wd:
                total += w[o, ci, di, dj] * x[g * c_per + ci, r, c]
        out[o, i, j] = total
    return out


def naive_conv_down(s, w, in_shape, stride, pad, dil, groups):
    """Transposed filtering: each output value sends weight * value back to its inputs."""
    c_in, h, wd = in_shape
    c_out, c_per, k, _ = w.shape
    out = np.zeros(in_shape)
    per_out = c_out // groups
    for o, i, j in itertools.product(*(range(n) for n in s.shape)):
        g = o // per_out
        for ci, di, dj in itertools.product(range(c_per), range(k), range(k)):
            r, c = i * stride - pad + di * dil, j * stride - pad + dj * dil
            if 0 <= r < h and 0 <= c < wd:
                out[g * c_per + ci, r, c] += w[o, ci, di, dj] * s[o, i, j]
    return out


def pool_size(n, k, stride, pad, ceil):
    span = n + 2 * pad - k
    size = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (size - 1) * stride >= n + pad:  # last window must start inside the input
        size -= 1
    return size


def naive_maxpool(x, k, stride, pad, ceil):
    """Max-pool with switches: the (row, col) of the maximum of each window."""
    c, h, wd = x.shape
    ho, wo = pool_size(h, k, stride, pad, ceil), pool_size(wd, k, stride, pad, ceil)
    out = np.zeros((c, ho, wo))
    switches = np.zeros((c, ho, wo, 2), dtype=int)
    for ch, i, j in itertools.product(range(c), range(ho), range(wo)):
        best, where = -np.inf, None
        for di, dj in itertools.product(range(k), range(k)):
            r, col = i * stride - pad + di, j * stride - pad + dj
            if 0 <= r < h and 0 <= col < wd and x[ch, r, col] > best:
                best, where = x[ch, r, col], (r, col)
        out[ch, i, j], switches[ch, i, j] = best, where
    return out, switches


def naive_unpool(s, switches, in_shape):
    out = np.zeros(in_shape)
    for ch, i, j in itertools.product(*(range(n) for n in s.shape)):
        r, c = switches[ch, i, j]
        out[ch, r, c] += s[ch, i, j]  # overlapping windows sharing a switch add up
    return out


def naive_deconvnet(model: nn.Sequential, image: np.ndarray, layer: int, unit, seed_value):
    """Project unit (channel, y, x) of model[layer]'s output of one image [C, H, W]."""
    x, records = image, []
    for m in list(model)[: layer + 1]:
        records.append((m, x.shape))
        if isinstance(m, nn.Conv2d):
            x = naive_conv(x, m.weight.detach().numpy(), m.bias.detach().numpy(), m.stride[0],
                           m.padding[0], m.dilation[0], m.groups)
        elif isinstance(m, nn.ReLU):
            x = np.maximum(x, 0)
        elif isinstance(m, nn.MaxPool2d):
            x, sw = naive_maxpool(x, m.kernel_size, m.stride, m.padding, m.ceil_mode)
            records[-1] = (m, records[-1][1], sw)
    s = np.zeros(x.shape)
    s[unit] = x[unit] if seed_value is None else seed_value
    for rec in reversed(records):
        m, in_shape = rec[0], rec[1]
        if isinstance(m, nn.Conv2d):
            s = naive_conv_down(s, m.weight.detach().numpy(), in_shape, m.stride[0],
                                m.padding[0], m.dilation[0], m.groups)
        elif isinstance(m, nn.ReLU):
            s = np.maximum(s, 0)  # the deconvnet rectifies the reconstruction
        else:
            s = naive_unpool(s, rec[2], in_shape)
    return s


# Random stacks: overlapping / non-overlapping / padded / ceil-mode pools, strides, padding,
# dilation, groups.
STACKS = {
    "overlapping_ceil": lambda: nn.Sequential(
        nn.Conv2d(3, 4, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(4, 5, 3, 1, 0), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True)),
    "strided_dilated": lambda: nn.Sequential(
        nn.Conv2d(2, 4, 5, stride=2, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, padding=1), nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2),
        nn.ReLU()),
    "non_overlapping": lambda: nn.Sequential(
        nn.Conv2d(3, 3, 3, stride=1, padding=0), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 2, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(3)),
}


def _stack(name: str, seed: int = 0) -> tuple[nn.Sequential, torch.Tensor]:
    torch.manual_seed(seed)
    model = STACKS[name]().double().eval()
    image = torch.randn(2, model[0].in_channels, 19, 19, dtype=torch.float64)
    return model, image


def _some_units(act: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    n, c, h, w = act.shape
    units = torch.stack([torch.randint(0, s, (count,), generator=g) for s in (n, c, h, w)], 1)
    top = act.reshape(-1).argmax()  # always include a live unit
    return torch.cat([units, torch.stack(torch.unravel_index(top, act.shape))[None]])


@pytest.mark.parametrize("name", list(STACKS))
def test_explicit_equals_naive_loops_and_captum(name):
    from captum.attr import NeuronDeconvolution

    model, images = _stack(name)
    engine = Deconvnet(model)
    last = len(model) - 1
    for layer in (last, last - 1):
        act = engine.activations(images, str(layer))
        units = _some_units(act, 3, seed=layer)
        ours = engine.project(images, str(layer), units, seed="activation")
        ours_unit = engine.project(images, str(layer), units, seed="unit")
        captum = NeuronDeconvolution(model, model[layer])
        for row, (i, c, y, x) in enumerate(units.tolist()):
            naive = naive_deconvnet(model, images[i].numpy(), layer, (c, y, x), None)
            np.testing.assert_allclose(ours[row].numpy(), naive, rtol=0, atol=1e-12)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = captum.attribute(images[i:i + 1].clone().requires_grad_(True),
                                       neuron_selector=(c, y, x))
            assert (ours_unit[row] - ref[0]).abs().max().item() < 1e-10
        assert ours.abs().sum() > 0  # the comparison is not between zeros


def test_hand_computed_overlapping_pool_sums_at_shared_switch():
    # x (4x4) -> MaxPool2d(2, stride=1) -> p (3x3) -> Conv2d(1, 1, 2) with w = [[1, 2], [3, 4]],
    # no bias -> ReLU.  Rows of x: [1 0 2 0], [0 3 0 1], [2 0 0 4], [0 1 5 0].
    # p = [[3 3 2], [3 3 4], [2 5 5]]; switches: p00, p01, p10, p11 -> x(1,1); p02 -> x(0,2);
    # p12 -> x(2,3); p20 -> x(2,0); p21, p22 -> x(3,2).
    # Unit (0, 0): z = 1*3 + 2*3 + 3*3 + 4*3 = 30 (seed 30). Down: ReLU(30) = 30; transposed
    # filter puts 30*w = [[30, 60], [90, 120]] on p[0:2, 0:2]; all four share switch x(1,1):
    # 30 + 60 + 90 + 120 = 300 at (1, 1), zero elsewhere (MaxUnpool2d would keep only one).
    # Unit (1, 1): z = 1*3 + 2*4 + 3*5 + 4*5 = 46; 46*w = [[46, 92], [138, 184]] on p[1:3, 1:3]:
    # p11 -> x(1,1) += 46; p12 -> x(2,3) += 92; p21, p22 -> x(3,2) += 138 + 184 = 322.
    x = torch.tensor([[1, 0, 2, 0], [0, 3, 0, 1], [2, 0, 0, 4], [0, 1, 5, 0]],
                     dtype=torch.float64).reshape(1, 1, 4, 4)
    conv = nn.Conv2d(1, 1, 2, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2))
    model = nn.Sequential(nn.MaxPool2d(2, stride=1), conv, nn.ReLU())
    out = Deconvnet(model).project(x, "2", torch.tensor([[0, 0, 0, 0], [0, 0, 1, 1]]))
    first = torch.zeros(4, 4, dtype=torch.float64)
    first[1, 1] = 300
    second = torch.zeros(4, 4, dtype=torch.float64)
    second[1, 1], second[2, 3], second[3, 2] = 46, 92, 322
    torch.testing.assert_close(out[0, 0], first, rtol=0, atol=0)
    torch.testing.assert_close(out[1, 0], second, rtol=0, atol=0)
    generic = GenericDeconvnet(model, windowed=False).project(
        x, "2", torch.tensor([[0, 0, 0, 0], [0, 0, 1, 1]]))
    torch.testing.assert_close(generic, out, rtol=0, atol=0)


def test_hand_computed_rectified_reconstruction_differs_from_gradient():
    # x = [1, 2, 3] (a 1x3 image) -> conv A (1x1, weight 2) -> ReLU -> conv B (kernel 1x2,
    # weights [1, -1]) -> ReLU.  a = [2, 4, 6]; z_B = [2 - 4, 4 - 6] = [-2, -2]: both dead.
    # Deconvnet of unit x=0 seeded with 1: ReLU(1) = 1; B^T: [1*1, 1*(-1), 0] = [1, -1, 0];
    # ReLU -> [1, 0, 0]; A^T: [2, 0, 0].  Gradient and guided: the dead top ReLU gives [0, 0, 0].
    a = nn.Conv2d(1, 1, 1, bias=False).double()
    b = nn.Conv2d(1, 1, (1, 2), bias=False).double()
    with torch.no_grad():
        a.weight.fill_(2.0)
        b.weight.copy_(torch.tensor([1.0, -1.0]).reshape(1, 1, 1, 2))
    model = nn.Sequential(a, nn.ReLU(), b, nn.ReLU())
    x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).reshape(1, 1, 1, 3)
    unit = torch.tensor([[0, 0, 0, 0]])
    expected = torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64).reshape(1, 1, 1, 3)
    assert torch.equal(Deconvnet(model).project(x, "3", unit, seed="unit"), expected)
    generic = GenericDeconvnet(model, windowed=False)
    assert torch.equal(generic.project(x, "3", unit, seed="unit"), expected)
    for rule in ("gradient", "guided"):
        out = GenericDeconvnet(model, rule=rule).project(x, "3", unit, seed="unit")
        assert torch.equal(out, torch.zeros_like(expected))
    # Seeded with the (zero) activation, the paper's projection of a dead unit is zero.
    assert torch.equal(Deconvnet(model).project(x, "3", unit), torch.zeros_like(expected))


@pytest.mark.parametrize("name", list(STACKS))
def test_batched_equals_single_and_independent_of_chunk_size(name):
    model, images = _stack(name, seed=3)
    engine = Deconvnet(model)
    layer = str(len(model) - 1)
    units = _some_units(engine.activations(images, layer), 7, seed=5)
    together = engine.project(images, layer, units, chunk_size=64)
    assert together.shape == (len(units), *images.shape[1:])
    for chunk in (1, 3):
        torch.testing.assert_close(engine.project(images, layer, units, chunk_size=chunk),
                                   together, rtol=0, atol=1e-13)
    for row, unit in enumerate(units):
        single = engine.project(images[unit[0]:unit[0] + 1], layer,
                                torch.cat([torch.zeros(1, dtype=torch.long), unit[1:]])[None])
        torch.testing.assert_close(single[0], together[row], rtol=0, atol=1e-13)


def test_feature_map_projection_matches_generic_and_seeds_differ():
    model, images = _stack("overlapping_ceil", seed=1)
    layer = "4"
    act = Deconvnet(model).activations(images, layer)
    channel = int(act.sum((0, 2, 3)).argmax())
    for seed in ("activation", "unit"):
        ours = Deconvnet(model).project_feature_map(images, layer, channel, seed=seed,
                                                    chunk_size=1)
        generic = GenericDeconvnet(model, windowed=False).project_feature_map(
            images, layer, channel, seed=seed)
        assert ours.shape == images.shape
        torch.testing.assert_close(ours, generic, rtol=0, atol=1e-12)
    a = Deconvnet(model).project_feature_map(images, layer, channel, seed="activation")
    u = Deconvnet(model).project_feature_map(images, layer, channel, seed="unit")
    assert not torch.allclose(a / a.abs().max(), u / u.abs().max())


def test_fully_connected_layers_take_image_feature_units():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(),
                          nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Linear(36, 5), nn.ReLU(),
                          nn.Linear(5, 3)).double()
    images = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    units = torch.tensor([[0, 1], [1, 2], [1, 0]])
    for layer in ("7", "8"):
        ours = Deconvnet(model).project(images, layer, units, seed="unit")
        ref = GenericDeconvnet(model, windowed=False).project(images, layer, units, seed="unit")
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
        assert ours.abs().sum() > 0
    with pytest.raises(ValueError, match=r"\[K, 2\]"):
        Deconvnet(model).project(images, "7", torch.tensor([[0, 1, 0, 0]]))


def test_functional_flatten_and_relu_in_forward_are_followed():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(4 * 5 * 5, 6)

        def forward(self, x):
            x = self.pool(torch.relu(self.conv(x)))
            return self.fc(x.view(x.size(0), -1))

    torch.manual_seed(2)
    model = Net().double()
    images = torch.randn(3, 3, 10, 10, dtype=torch.float64)
    units = torch.tensor([[0, 1], [2, 5]])
    ours = Deconvnet(model).project(images, "fc", units)
    generic = GenericDeconvnet(model, windowed=False)
    torch.testing.assert_close(ours, generic.project(images, "fc", units), rtol=0, atol=1e-12)


def test_top_units_are_the_largest_activations():
    model, images = _stack("overlapping_ceil")
    engine = Deconvnet(model)
    act = engine.activations(images, "4")
    top = engine.top_units(images, "4", 5)
    assert torch.equal(top.values, act.reshape(-1).topk(5).values)
    for (i, c, y, x), v in zip(top.units.tolist(), top.values):
        assert act[i, c, y, x] == v
    per_map = engine.top_units(images, "4", 2, channel=3, distinct_images=True)
    assert (per_map.units[:, 1] == 3).all() and len(set(per_map.units[:, 0].tolist())) == 2
    assert torch.equal(per_map.values, act[:, 3].amax((1, 2)).sort(descending=True).values)


def test_unsupported_or_non_chain_paths_name_the_culprit_and_point_to_generic():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sigmoid(), nn.Conv2d(4, 4, 3))
    images = torch.randn(1, 3, 9, 9)
    with pytest.raises(UnsupportedModuleError, match=r"'1' \(Sigmoid\).*GenericDeconvnet"):
        Deconvnet(model).project(images, "2", torch.tensor([[0, 0, 0, 0]]))
    # Layers below the unsupported module still work.
    assert Deconvnet(model).project(images, "0", torch.tensor([[0, 0, 0, 0]])).shape[0] == 1

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.conv(x) + x)

    with pytest.raises(UnsupportedModuleError, match="not a chain.*GenericDeconvnet"):
        Deconvnet(Residual()).project(images, "relu", torch.tensor([[0, 0, 0, 0]]))

    class Reused(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.conv(self.relu(x)))

    with pytest.raises(UnsupportedModuleError, match="called 2 times"):
        Deconvnet(Reused()).project(images, "relu", torch.tensor([[0, 0, 0, 0]]))


@pytest.mark.parametrize("bad, match", [
    (torch.tensor([[0, 0, 0]]), r"shape \[K, 4\]"),
    (torch.tensor([[2, 0, 0, 0]]), "image"),
    (torch.tensor([[0, 99, 0, 0]]), "channel"),
    (torch.tensor([[0, 0, 0, -1]]), "x"),
    (torch.tensor([[0.0, 0, 0, 0]]), "integer"),
])
def test_bad_units_are_rejected_with_a_useful_message(bad, match):
    model, images = _stack("overlapping_ceil")
    with pytest.raises(ValueError, match=match):
        Deconvnet(model).project(images, "4", bad)


def test_bad_arguments():
    model, images = _stack("overlapping_ceil")
    units = torch.tensor([[0, 0, 0, 0]])
    with pytest.raises(ValueError, match="seed"):
        Deconvnet(model).project(images, "4", units, seed="value")
    with pytest.raises(ValueError, match="chunk_size"):
        Deconvnet(model).project(images, "4", units, chunk_size=0)
    with pytest.raises(ValueError, match="unsqueeze"):
        Deconvnet(model).project(images[0], "4", units)
    with pytest.raises(ValueError, match="channel"):
        Deconvnet(model).project_feature_map(images, "4", 99)
    with pytest.raises(TypeError):
        Deconvnet("not a model")
