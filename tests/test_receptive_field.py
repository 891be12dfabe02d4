"""Receptive fields: hand-computed values (REFERENCE.md) and the gradient support of real units."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import deconv
from deconv.layers import UnknownLayerError
from deconv.receptive_field import ReceptiveField, ReceptiveFieldError, receptive_field

# ----------------------------------------------------------------------------------------------
# Hand-computed values.


@pytest.fixture(scope="module")
def zfnet():
    return deconv.load_model("zfnet")


@pytest.mark.parametrize("layer, size, jump, out", [
    ("features.2", 11, 4, 55),    # pool1
    ("features.6", 43, 16, 13),   # pool2
    ("features.12", 139, 16, 13),  # conv5
    ("features.14", 171, 32, 6),   # pool5
    (5, 139, 16, 13),             # paper layer 5 = ReLU5
])
def test_zfnet_matches_paper(zfnet, layer, size, jump, out):
    rf = receptive_field(zfnet, layer)
    assert rf.size == (size, size) and rf.jump == (jump, jump)
    assert rf.output_size == (out, out) and rf.input_size == (224, 224)


def test_zfnet_starts_follow_padding(zfnet):
    # conv1 pads 1 px; conv2 pads none; conv3-5 pad 1 unit each at jump 16: -1 - 3 * 16.
    assert receptive_field(zfnet, "features.0").start == (-1, -1)
    assert receptive_field(zfnet, "features.14").start == (-49, -49)
    rf = receptive_field(zfnet, "features.14")
    assert rf.box(0, 0, clip=False) == (-49, -49, 122, 122)
    assert rf.box(0, 0) == (0, 0, 122, 122)
    assert rf.box(5, 5) == (-49 + 160, -49 + 160, 224, 224)


def test_alexnet_matches_paper():
    alexnet = deconv.load_model("alexnet", weights=None)
    assert receptive_field(alexnet, "features.10").size == (163, 163)  # conv5
    assert receptive_field(alexnet, "features.12").size == (195, 195)  # pool5
    assert receptive_field(alexnet, "features.12").jump == (32, 32)


@pytest.fixture(scope="module")
def vgg16():
    return torchvision.models.vgg16(weights=None)


@pytest.mark.parametrize("layer, size, jump, start", [
    ("features.0", 3, 1, -1),       # conv1_1
    ("features.4", 6, 2, -2),       # pool1
    ("features.8", 14, 2, -6),      # ReLU conv2_2
    ("features.16", 44, 8, -18),    # pool3
    ("features.26", 164, 16, -74),  # conv5_2
    ("features.30", 212, 32, -90),  # pool5
])
def test_vgg16_by_hand(vgg16, layer, size, jump, start):
    rf = receptive_field(vgg16, layer)
    assert (rf.size, rf.jump, rf.start) == ((size, size), (jump, jump), (start, start))


def test_vgg16_fields_are_centred_on_their_units(vgg16):
    # "same" padding everywhere and 2x2 pools: unit i is centred on pixel i*jump + (jump-1)/2.
    rf = receptive_field(vgg16, "features.23")
    for i in (0, 3, rf.output_size[0] - 1):
        assert rf.center(i, i) == (i * 16 + 7.5, i * 16 + 7.5)


def test_resnet18_by_hand():
    resnet = torchvision.models.resnet18(weights=None)
    # stem: conv 7/2 p3 (7, j2, start -3), max-pool 3/2 p1 (11, j4, start -5);
    # layer1: four 3x3 convs at jump 4 (+8 each): 43, start -21.
    rf = receptive_field(resnet, "layer1")
    assert (rf.size, rf.jump, rf.start, rf.output_size) == ((43, 43), (4, 4), (-21, -21),
                                                            (56, 56))
    # layer2.0.conv1 is 3x3/2 p1 at jump 4 (51, j8, start -25), conv2 3x3 at jump 8 (67, -33).
    assert receptive_field(resnet, "layer2.0.conv2").size == (67, 67)
    # The residual add takes the union with the 1x1/2 shortcut (contained in the main path).
    assert receptive_field(resnet, "layer2.0").size == (67, 67)
    assert receptive_field(resnet, "layer4").size == (435, 435)
    assert receptive_field(resnet, "layer4").jump == (32, 32)


def test_units_after_global_pooling_see_the_whole_image():
    resnet = torchvision.models.resnet18(weights=None)
    for layer in ("avgpool", "fc"):
        rf = receptive_field(resnet, layer)
        assert rf.is_global and rf.jump == (0, 0) and rf.output_size == (1, 1)
        assert rf.box(0, 0) == (0, 0, 224, 224)
        assert rf.size == (435 + 6 * 32, 435 + 6 * 32)  # union of the 7 x 7 layer4 fields
    with pytest.raises(IndexError, match="outside this layer's output"):
        receptive_field(resnet, "fc").box(0, 1)


def test_non_square_kernels_strides_and_input():
    net = nn.Sequential(nn.Conv2d(1, 2, (3, 5), stride=(1, 2), padding=(1, 0)), nn.ReLU(),
                        nn.MaxPool2d((2, 3), stride=(2, 1), ceil_mode=True),
                        nn.Conv2d(2, 2, (1, 3), dilation=(1, 2)))
    rf = receptive_field(net, "3", input_size=(20, 31))
    # rows: 3 (start -1) -> pool 2/2: 4, j2 -> 1x.: 4. cols: 5, j2 -> pool 3/1: 9 -> k3 d2: 17.
    assert (rf.size, rf.jump, rf.start) == ((4, 17), (2, 2), (-1, 0))
    assert rf.output_size == tuple(net(torch.zeros(1, 1, 20, 31)).shape[-2:])


def test_tf_same_padding_modules_and_functional_pad():
    class PadThenConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, stride=2)

        def forward(self, x):
            return self.conv(F.pad(x, (2, 0, 1, 3)))  # (left, right, top, bottom)

    assert receptive_field(PadThenConv(), "conv", 16).start == (-1, -2)
    net = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(1, 1, 3, stride=2))
    rf = receptive_field(net, "1", 16)
    assert (rf.start, rf.size, rf.output_size) == ((0, 0), (3, 3), (8, 8))


class ShapeDependentSamePad(nn.Module):
    """TF "SAME" padding computed from the input shape: torch.fx cannot trace it (math.ceil)."""

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x):
        pads = []
        for n in (x.shape[-1], x.shape[-2]):
            total = max((math.ceil(n / self.stride) - 1) * self.stride + self.kernel - n, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)


def test_shape_dependent_padding_is_traced_at_the_actual_shape():
    net = nn.Sequential(ShapeDependentSamePad(3, 2), nn.Conv2d(1, 1, 3, 2), nn.ReLU(),
                        ShapeDependentSamePad(5, 2), nn.Conv2d(1, 1, 5, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to hooks: only the pad modules are opaque
        rf = receptive_field(net, "4", (16, 15))
    # rows (16): pads (0, 1), then 8 rows pad (1, 2): 3 + 4 * 2 = 11, start 0 - 1 * 2.
    # cols (15): pads (1, 1), then 8 cols pad (1, 2): start -1 - 2.
    assert (rf.size, rf.jump, rf.start, rf.output_size) == ((11, 11), (4, 4), (-2, -3), (4, 4))
    reference = net.double()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.uniform_(0.5, 1.0)
    for y, x in corner_and_middle_units(rf.output_size):
        support = gradient_support(reference, (16, 15), y, x)
        assert torch.equal(support, box_mask(rf.box(y, x), (16, 15))), (y, x)


def test_zoo_efficientnet_lite0_if_present():
    if "efficientnet-lite0" not in deconv.list_models():
        pytest.skip("efficientnet-lite0 is not in the zoo")
    model = deconv.load_model("efficientnet-lite0", weights=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stem = receptive_field(model, 1)
    assert (stem.size, stem.jump, stem.start) == ((3, 3), (2, 2), (0, 0))  # TF pads (0, 1)


# ----------------------------------------------------------------------------------------------
# Empirical check: the input pixels with a nonzero gradient of one unit are its field.


class SumPool(nn.Module):
    """The geometry of a max-pool, but every pixel of each window gets gradient (a sum)."""

    def __init__(self, pool: nn.MaxPool2d, out_size: tuple[int, int]):
        super().__init__()
        self.pool, self.out_size = pool, out_size

    def forward(self, x):
        p, out = self.pool, self.out_size
        k, s, pad, d = (nn.modules.utils._pair(v) for v in (p.kernel_size, p.stride, p.padding,
                                                             p.dilation))
        span = [(k[i] - 1) * d[i] + 1 for i in range(2)]
        right = [max(pad[i], (out[i] - 1) * s[i] + span[i] - x.shape[2 + i] - pad[i])
                 for i in range(2)]
        x = F.pad(x, (pad[1], right[1], pad[0], right[0]))
        windows = x.unfold(2, span[0], s[0]).unfold(3, span[1], s[1])[..., ::d[0], ::d[1]]
        return windows.sum((-1, -2))[:, :, :out[0], :out[1]]


class Residual(nn.Module):
    def __init__(self, channels: int, kernel: int, stride: int):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(channels, channels, kernel, stride, kernel // 2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, 1, 1))
        self.shortcut = nn.Identity() if stride == 1 else nn.Conv2d(channels, channels, 1, stride)

    def forward(self, x):
        return F.relu(self.main(x) + self.shortcut(x))


class FunctionalPad(nn.Module):
    def __init__(self, pad: tuple[int, int, int, int]):
        super().__init__()
        self.pad = pad

    def forward(self, x):
        return F.pad(x, self.pad)


CHANNELS = 2


@st.composite
def random_nets(draw, dense: bool):
    """A small random CNN and input size. ``dense``: no dilation and stride <= kernel, so every
    field is a full rectangle (no gaps); otherwise fields may have gaps (dilation, big strides).
    """
    size = (draw(st.integers(9, 20)), draw(st.integers(9, 20)))
    layers: list[nn.Module] = [nn.Conv2d(1, CHANNELS, 1)]
    shape = torch.Size([1, CHANNELS, *size])
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["conv", "conv", "max", "avg", "zeropad", "fpad", "res"]))
        k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        s = tuple(draw(st.integers(1, k[i] if dense else 3)) for i in range(2))
        d = (1, 1) if dense else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        p = tuple(draw(st.integers(0, k[i] // 2)) for i in range(2))
        if kind == "conv":
            layer = nn.Conv2d(CHANNELS, CHANNELS, k, s, p, d)
        elif kind == "max":
            layer = nn.MaxPool2d(k, s, p, d, ceil_mode=draw(st.booleans()))
        elif kind == "avg":
            layer = nn.AvgPool2d(k, s, p, ceil_mode=draw(st.booleans()))
        elif kind == "zeropad":
            layer = nn.ZeroPad2d(tuple(draw(st.integers(0, 2)) for _ in range(4)))
        elif kind == "fpad":
            layer = FunctionalPad(tuple(draw(st.integers(-1, 2)) for _ in range(4)))
        else:
            kernel = draw(st.sampled_from([1, 3]))
            layer = Residual(CHANNELS, kernel, draw(st.integers(1, 1 if dense and kernel == 1
                                                              else 2)))
        try:
            with torch.no_grad():
                new_shape = layer(torch.zeros(shape)).shape
        except RuntimeError:  # too small for this layer: skip it
            continue
        if min(new_shape[-2:]) < 1:
            continue
        layers += [layer, nn.ReLU()] if kind in ("conv", "res") else [layer]
        shape = new_shape
    return nn.Sequential(*layers), size


def gradient_net(net: nn.Sequential, size: tuple[int, int]) -> nn.Sequential:
    """Copy of ``net`` in float64 with positive weights, max-pools replaced by sum-pools."""
    layers, x = [], torch.zeros(1, 1, *size)
    for layer in net:
        with torch.no_grad():
            y = layer(x)
        layers.append(SumPool(layer, tuple(y.shape[-2:])) if isinstance(layer, nn.MaxPool2d)
                      else layer)
        x = y
    copy = nn.Sequential(*layers).double()
    with torch.no_grad():
        for parameter in copy.parameters():
            parameter.uniform_(0.5, 1.0)  # positive weights and biases: no ReLU is ever dead
    return copy


def gradient_support(net: nn.Module, size: tuple[int, int], y: int, x: int) -> torch.Tensor:
    image = (torch.rand(1, 1, *size, dtype=torch.float64) + 0.5).requires_grad_(True)
    net(image)[0, :, y, x].sum().backward()
    return image.grad[0, 0] != 0


def corner_and_middle_units(output_size: tuple[int, int]) -> set[tuple[int, int]]:
    h, w = output_size
    return {(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (h // 2, w // 2)}


def box_mask(box: tuple[int, int, int, int], size: tuple[int, int]) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    top, left, bottom, right = box
    mask[top:bottom, left:right] = True
    return mask


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_nets(dense=True))
def test_gradient_support_equals_box_on_random_dense_nets(net_and_size):
    net, size = net_and_size
    rf = receptive_field(net, str(len(net) - 1), size)
    reference = gradient_net(net, size)
    assert rf.output_size == tuple(reference(torch.zeros(1, 1, *size).double()).shape[-2:])
    for y, x in corner_and_middle_units(rf.output_size):
        support = gradient_support(reference, size, y, x)
        assert torch.equal(support, box_mask(rf.box(y, x), size)), (net, size, (y, x))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_nets(dense=False))
def test_gradient_support_has_the_box_as_bounding_box_with_dilation(net_and_size):
    # Dilation or strides above the kernel leave gaps inside a field; the box is its bounding
    # box: every pixel read is inside, and the extreme pixels are read when inside the image.
    net, size = net_and_size
    rf = receptive_field(net, str(len(net) - 1), size)
    reference = gradient_net(net, size)
    for y, x in corner_and_middle_units(rf.output_size):
        support = gradient_support(reference, size, y, x)
        box = rf.box(y, x)
        assert not (support & ~box_mask(box, size)).any(), (net, size, (y, x))
        if rf.box(y, x, clip=False) == box and box[0] < box[2] and box[1] < box[3]:
            rows, cols = support.any(1).nonzero(), support.any(0).nonzero()
            assert (int(rows.min()), int(cols.min()), int(rows.max()) + 1,
                    int(cols.max()) + 1) == box, (net, size, (y, x))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 2, 1)
        self.gate = nn.Conv2d(channels, channels, 1)
        self.after = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x):
        x = F.relu(self.conv(x))
        return self.after(x * torch.sigmoid(self.gate(x.mean((2, 3), keepdim=True))))


def test_squeeze_excitation_gate_makes_fields_global_unless_local():
    net = SqueezeExcite(1).double()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.uniform_(0.5, 1.0)
    exact = receptive_field(net, "after", 11)
    assert exact.jump == (0, 0) and exact.output_size == (6, 6) and exact.is_global
    for y, x in corner_and_middle_units(exact.output_size):
        support = gradient_support(net, (11, 11), y, x)
        assert torch.equal(support, box_mask(exact.box(y, x), (11, 11)))
    local = receptive_field(net, "after", 11, local=True)
    assert (local.size, local.jump, local.start) == ((7, 7), (2, 2), (-3, -3))


# ----------------------------------------------------------------------------------------------
# Models fx cannot trace, errors, and the model left unchanged.


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 5, 2, 2)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(4, 4, 3, 1, 1)

    def forward(self, x):
        if x.sum() > 0:  # untraceable by torch.fx
            x = x * 2
        return self.conv2(self.pool(self.relu(self.conv1(x))))


def test_untraceable_model_falls_back_to_hooks_with_a_warning(model_guard):
    model = DataDependent()
    guard = model_guard(model)
    with pytest.warns(UserWarning, match="ASSUMING"):
        rf = receptive_field(model, "conv2", 32)
    traceable = nn.Sequential(model.conv1, model.relu, model.pool, model.conv2)
    assert rf == receptive_field(traceable, "3", 32)
    assert (rf.size, rf.jump) == ((5 + 2 * 2 + 2 * 4, 5 + 2 * 2 + 2 * 4), (4, 4))
    guard.check()


class Untraceable(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        if x.sum() > 0:  # untraceable by torch.fx
            x = x * 2
        return self.net(x)


@pytest.mark.parametrize("layer", ["layer1", "layer2.0.conv2", "layer3", "avgpool", "fc"])
def test_hooks_fallback_agrees_with_fx_on_resnet18(layer):
    # ResNet's residual adds are functional (invisible to hooks), but each shortcut's field lies
    # inside its main path, and torch.flatten is undone from the shapes: the results agree.
    resnet = torchvision.models.resnet18(weights=None)
    with pytest.warns(UserWarning, match="ASSUMING"):
        hooked = receptive_field(Untraceable(resnet), "net." + layer, 96)
    assert hooked == receptive_field(resnet, layer, 96)


class TwoBranches(nn.Module):
    """Inception-style: a 1x3 and a 5x1 branch, concatenated along channels."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 3, 2)
        self.wide = nn.Conv2d(2, 2, (1, 3), padding=(0, 1))
        self.tall = nn.Conv2d(2, 2, (5, 1), padding=(2, 0))
        self.mix = nn.Conv2d(4, 1, 1)

    def forward(self, x):
        x = F.relu(self.stem(x))
        return self.mix(torch.cat([F.relu(self.wide(x)), F.relu(self.tall(x))], 1))


def test_concatenated_branches_take_the_union_of_their_fields():
    net = TwoBranches().double()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.uniform_(0.5, 1.0)
    rf = receptive_field(net, "mix", (13, 15))
    # stem 3/2 (3 px, jump 2); wide adds 2 units along x, tall 4 units along y: 11 x 7.
    assert (rf.size, rf.jump, rf.start) == ((11, 7), (2, 2), (-4, -2))
    for y, x in corner_and_middle_units(rf.output_size):
        support = gradient_support(net, (13, 15), y, x)
        union = box_mask(rf.box(y, x), (13, 15))
        assert not (support & ~union).any()  # inside the union's bounding box (it is a cross)
        rows, cols = support.any(1).nonzero(), support.any(0).nonzero()
        assert (int(rows.min()), int(cols.min()), int(rows.max()) + 1,
                int(cols.max()) + 1) == rf.box(y, x)


def test_model_is_left_unchanged(model_guard):
    model = torchvision.models.resnet18(weights=None).train()
    model.layer1.eval()
    guard = model_guard(model)
    receptive_field(model, "layer3", 64)
    with pytest.raises(UnknownLayerError):
        receptive_field(model, "layer9", 64)
    guard.check()


def test_a_module_called_twice_reports_its_last_call_and_warns():
    resnet = torchvision.models.resnet18(weights=None)
    with pytest.warns(UserWarning, match="runs 2 times"):
        rf = receptive_field(resnet, "layer1.0.relu", 64)  # after bn1, then after the add
    assert rf == receptive_field(resnet, "layer1.0", 64)


def test_errors_are_specific():
    net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=2), nn.Conv2d(1, 1, 3))
    assert receptive_field(net, "0", 8).size == (3, 3)
    with pytest.raises(ReceptiveFieldError, match="Upsample"):
        receptive_field(net, "2", 8)
    with pytest.raises(ValueError, match="input_size"):
        receptive_field(net, "0", (8, 0))
    with pytest.raises(IndexError):
        receptive_field(net, "0", 8).box(6, 0)


def test_box_clips_and_centre():
    rf = ReceptiveField(size=(5, 5), jump=(2, 2), start=(-2, -2), input_size=(10, 10),
                        output_size=(5, 5))
    assert rf.box(0, 0, clip=False) == (-2, -2, 3, 3) and rf.box(0, 0) == (0, 0, 3, 3)
    assert rf.box(4, 4) == (6, 6, 10, 10)
    assert rf.center(0, 1) == (0.0, 2.0) and not rf.is_global


def test_no_warning_on_ordinary_models(zfnet):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        receptive_field(zfnet, "classifier.4")
