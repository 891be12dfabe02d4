"""Incremental occlusion on graphs (residual, branching, depthwise) equals the naive sweep.

The reference is :func:`naive_occlusion_outputs` (a batched forward of the occluded images,
checked one image at a time in ``test_incremental_occlusion.py``); everything runs in float64 on
random-weight instances of the torchvision families and the zoo's efficientnet-lite0, at small
sizes, with occluders of several sizes on a grid and hanging over every border and corner.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision.models as tvm
from torch import nn
from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.models.densenet import DenseNet
from torchvision.models.resnet import Bottleneck, ResNet

from deconv.occlusion.graph_engine import GraphOcclusion, supports_graph
from deconv.occlusion.naive import naive_occlusion_outputs

TOL64 = 1e-10


def _boxes(h: int, w: int, sizes: tuple[int, ...], stride: int) -> torch.Tensor:
    """Squares of each size on a grid, plus ones hanging over every border and corner."""
    rows = []
    for s in sizes:
        for y in range(-s // 2, h, stride):
            for x in range(-s // 2, w, stride):
                rows.append((y, y + s, x, x + s))
        rows += [(0, s, 0, s), (h - s, h, w - s, w), (-s // 2, s // 2, w // 2, w // 2 + s),
                 (h - s // 2, h + s // 2, w // 3, w // 3 + s), (h // 2, h // 2 + s, -2, s - 2),
                 (h // 3, h // 3 + s, w - 2, w + s), (0, h, 0, w), (h - 1, h, w - 1, w),
                 (h, h + s, 0, s)]  # the last one is outside: the unoccluded image
    return torch.tensor(rows)


def _random_stats(model: nn.Module) -> nn.Module:
    """Float64, eval mode, with batch norms whose running statistics are not the identity."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            if m.affine:
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.5, 0.5)
    return model.double().eval()


def _check(model: nn.Module, size: int, sizes=(8,), stride=6, *, layer=None, batch_size=7,
           fill=0.3, windowed_at_least=0.0, reduce="sum"):
    torch.manual_seed(1)
    image = torch.randn(3, size, size, dtype=torch.float64)
    boxes = _boxes(size, size, sizes, stride)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fall-back
        warnings.filterwarnings("ignore", "Using padding='same'")  # torch's, for even kernels
        engine = GraphOcclusion(model, image, fill, layer=layer, batch_size=batch_size,
                                reduce=reduce)
    got = engine.outputs(boxes)
    want = naive_occlusion_outputs(model, image, fill, boxes, layer=layer, reduce=reduce,
                                   batch_size=16)
    assert got.output.shape == want.output.shape
    torch.testing.assert_close(got.output, want.output, rtol=0, atol=TOL64)
    torch.testing.assert_close(engine.reference.output, model(image[None]), rtol=0, atol=TOL64)
    if layer is not None:
        assert got.captured.shape == want.captured.shape
        scale = max(1.0, float(want.captured.abs().max()))
        torch.testing.assert_close(got.captured, want.captured, rtol=0, atol=TOL64 * scale)
    share = len(engine.windowed) / len(engine.rules)
    assert share >= windowed_at_least, engine.plan.first_full().reason
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert not model.training
    return engine


# --------------------------------------------------------------------------- torchvision zoo
def _small_resnet50() -> nn.Module:
    return ResNet(Bottleneck, [1, 1, 1, 1], width_per_group=16, num_classes=10)


def _small_densenet() -> nn.Module:
    return DenseNet(growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16, bn_size=2,
                    num_classes=10)


def _small_convnext() -> nn.Module:
    return ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)], num_classes=10)


FAMILIES = {
    # name: (builder, input size, share of nodes at least computed on windows)
    "resnet18": (lambda: tvm.resnet18(num_classes=10), 32, 0.9),
    "resnet50": (_small_resnet50, 40, 0.9),
    "densenet": (_small_densenet, 40, 0.9),
    "googlenet": (lambda: tvm.googlenet(num_classes=10, aux_logits=False, init_weights=False),
                  40, 0.9),
    "mobilenet_v2": (lambda: tvm.mobilenet_v2(width_mult=0.35, num_classes=10), 40, 0.9),
    "mobilenet_v3": (lambda: tvm.mobilenet_v3_small(num_classes=10), 40, 0.0),
    "squeezenet": (lambda: tvm.squeezenet1_1(num_classes=10), 40, 0.9),
    "shufflenet_v2": (lambda: tvm.shufflenet_v2_x0_5(num_classes=10), 40, 0.0),
    "mnasnet": (lambda: tvm.mnasnet0_5(num_classes=10), 40, 0.9),
    "efficientnet_b0": (lambda: tvm.efficientnet_b0(num_classes=10), 40, 0.0),
    "regnet_x": (lambda: tvm.regnet_x_400mf(num_classes=10), 40, 0.9),
    "regnet_y": (lambda: tvm.regnet_y_400mf(num_classes=10), 40, 0.0),
    "convnext": (_small_convnext, 40, 0.6),
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_torchvision_families_match_naive(name):
    builder, size, windowed = FAMILIES[name]
    torch.manual_seed(0)
    _check(_random_stats(builder()), size, sizes=(8, 13), stride=9, windowed_at_least=windowed)


def test_inception_v3_matches_naive():
    torch.manual_seed(0)
    model = _random_stats(tvm.inception_v3(num_classes=10, aux_logits=False,
                                           init_weights=False))
    _check(model, 75, sizes=(16,), stride=30, windowed_at_least=0.9, batch_size=8)


@pytest.mark.parametrize("size", [64, 37])
def test_zoo_efficientnet_lite0_matches_naive(size):
    from deconv import load_model

    torch.manual_seed(0)
    model = _random_stats(load_model("efficientnet-lite0", weights=None).model)
    engine = _check(model, size, sizes=(9,), stride=11, layer="stages.3",
                    windowed_at_least=0.9)
    # The TF "SAME" pads (odd pixel bottom/right at 37 px) are windowed, not run in full.
    assert all(r.node.name in engine.windowed for r in engine.rules.values()
               if r.node.op == "call_module" and "pad" in str(r.node.target))


def test_resnet_captures_a_container_and_a_leaf_whole_or_summed():
    model = _random_stats(tvm.resnet18(num_classes=10))
    _check(model, 32, sizes=(6,), stride=7, layer="layer2")
    _check(model, 32, sizes=(6,), stride=7, layer="layer1.1.conv2", reduce=None)


def test_convnext_channels_last_blocks_are_windowed_and_captured():
    model = _random_stats(_small_convnext())
    engine = _check(model, 32, sizes=(6,), stride=9, layer="features.1.0.block.3")  # a Linear
    assert engine.rules[engine._capture_node].layout == "nhwc"
    assert engine._capture_node in engine.windowed


def test_patch_and_stride_sizes_including_whole_image():
    model = _random_stats(tvm.resnet18(num_classes=10))
    for sizes, stride in (((3,), 5), ((16,), 8), ((32, 1), 16)):
        _check(model, 32, sizes=sizes, stride=stride, batch_size=5)


# --------------------------------------------------------------------------- hand-made graphs
class _Zoo(nn.Module):
    """Every rule on purpose: asymmetric "same", F.pad, functional pools, dilation, groups, cat,
    element-wise mul of two maps, an in-place add on a map read twice, an SE gate."""

    def __init__(self):
        super().__init__()
        self.same = nn.Conv2d(3, 4, 4, padding="same")  # even kernel: odd pixel bottom/right
        self.dil = nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2)
        self.strided = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.dw = nn.Conv2d(6, 6, 5, stride=1, padding=2, groups=6, bias=False)
        self.point = nn.Conv2d(10, 6, 1)
        self.bn = nn.BatchNorm2d(6)
        self.relu = nn.ReLU(inplace=True)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(6, 6, 1), nn.Sigmoid())
        self.tail = nn.Conv2d(6, 5, 3, padding=1)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        x = torch.tanh(self.same(x))
        y = F.pad(x, (1, 2, 0, 3), value=0.5)
        y = F.max_pool2d(y, 3, stride=1, padding=1, ceil_mode=True)[..., :x.shape[-2],
                                                                 :x.shape[-1]]
        x = x * torch.sigmoid(self.dil(x))  # merge by mul
        x = self.strided(x)
        z = F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        x = self.relu(x + self.dw(x))  # residual add, then in place
        w = x.add_(1.0)  # in-place method on a map read again below
        x = torch.cat([x, w[:, :4] * 0 + x[:, :4]], 1)  # slices: run in full
        x = self.bn(self.point(x))
        x = x * self.se(x)  # squeeze-excitation: changed everywhere after this
        x = self.tail(x) + z.mean((1, 2, 3), keepdim=True) + y.amax((1, 2, 3), keepdim=True)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class _Branches(nn.Module):
    """Concatenated branches with different paddings and pools (an Inception block)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 2, 1)
        self.b = nn.Conv2d(3, 3, 5, padding=2)
        self.c = nn.Conv2d(3, 2, (1, 3), padding=(0, 1))
        self.pool = nn.MaxPool2d(3, 1, 1)
        self.mix = nn.Conv2d(10, 4, 3, stride=2)

    def forward(self, x):
        branches = [self.a(x), self.b(x), self.c(x), self.pool(x) * 2.0 - 1.0]
        return self.mix(F.relu(torch.cat(branches, dim=1)))


def test_hand_made_graph_with_every_rule():
    torch.manual_seed(2)
    model = _random_stats(_Zoo())
    engine = _check(model, 21, sizes=(4, 7), stride=4, batch_size=4)
    kinds = {r.kind for r in engine.rules.values() if r.node.name in engine.windowed}
    assert kinds == {"input", "pointwise", "spatial", "merge"}
    assert engine.plan.first_full() is not None


def test_branches_concatenated_and_conv_map_output():
    torch.manual_seed(3)
    model = _random_stats(_Branches())
    engine = _check(model, 19, sizes=(3, 6), stride=4, layer="b", batch_size=3)
    assert engine.plan.first_full() is None  # the whole graph is windowed


def test_approximate_modes():
    torch.manual_seed(4)
    model = _random_stats(tvm.resnet18(num_classes=10))
    image = torch.randn(3, 40, 40, dtype=torch.float64)
    boxes = _boxes(40, 40, (10,), 8)
    exact = GraphOcclusion(model, image, 0.0).outputs(boxes).output
    full = GraphOcclusion(model, image, 0.0, max_fraction=1.0).outputs(boxes).output
    torch.testing.assert_close(full, exact, rtol=0, atol=TOL64)
    cut = GraphOcclusion(model, image, 0.0, max_fraction=0.4)
    approx = cut.outputs(boxes).output
    assert not torch.allclose(approx, exact)  # the cap did cut the projective field
    corr = float(torch.corrcoef(torch.stack([approx.flatten(), exact.flatten()]))[0, 1])
    assert math.isclose(corr, 1.0, abs_tol=0.1)
    low = GraphOcclusion(model, image, 0.0, compute_dtype=torch.bfloat16).outputs(boxes).output
    assert low.dtype == torch.float64
    assert float((low - exact).abs().max()) < 0.1 * float(exact.abs().max())


def test_untraceable_model_falls_back_with_a_warning():
    class Dynamic(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
                return self.conv(x)
            return -self.conv(x)

    model = Dynamic().double().eval()
    ok, reason = supports_graph(model)
    assert not ok and "trace" in reason
    image = torch.randn(3, 12, 12, dtype=torch.float64)
    boxes = _boxes(12, 12, (4,), 5)
    with pytest.warns(UserWarning, match="trace"):
        engine = GraphOcclusion(model, image, 0.0)
    got = engine.outputs(boxes).output
    want = naive_occlusion_outputs(model, image, 0.0, boxes).output
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not supports_graph(tvm.resnet18().train())[0]


def test_a_reused_module_is_refused_as_layer():
    """(The checks every exact engine shares are in test_occlusion_engines.py.)"""
    model = _random_stats(tvm.resnet18(num_classes=10))
    image = torch.randn(3, 32, 32, dtype=torch.float64)
    with pytest.raises(ValueError, match="called 2 times"):
        GraphOcclusion(model, image, 0.0, layer="layer1.0.relu")


def test_sweep_auto_uses_the_graph_engine_and_warns_on_fall_back():
    from deconv.occlusion import occlusion_sweep

    model = _random_stats(tvm.resnet18(num_classes=10))
    image = torch.randn(3, 32, 32, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auto = occlusion_sweep(model, image, patch=8, stride=6, layer="layer2", channel=3,
                               progress=False)
    naive = occlusion_sweep(model, image, patch=8, stride=6, layer="layer2", channel=3,
                            engine="naive", progress=False)
    assert auto.engine == "graph"
    torch.testing.assert_close(auto.classifier.probability, naive.classifier.probability,
                               rtol=0, atol=TOL64)
    torch.testing.assert_close(auto.feature.total, naive.feature.total, rtol=0, atol=1e-9)

    class Dynamic(nn.Sequential):
        def forward(self, x):
            return super().forward(x) if x.shape[-1] > 4 else x  # fx: shape is a Proxy

    dynamic = Dynamic(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5)).double().eval()
    dynamic(image[None])
    with pytest.warns(UserWarning, match="naive sweep"):
        fallback = occlusion_sweep(dynamic, image, patch=8, stride=8, progress=False)
    assert fallback.engine == "naive"


def test_in_place_write_into_a_view_read_again_is_refused():
    class ViewWrite(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            x = self.conv(x)
            x[:, :2].relu_()  # changes x itself
            return x * 2.0

    ok, reason = supports_graph(ViewWrite().eval())
    assert not ok and "view" in reason


def test_make_incremental_engine_picks_the_chain_engine_where_it_applies():
    from deconv.occlusion.engines import make_incremental_engine
    from deconv.occlusion.incremental import IncrementalOcclusion

    chain = _random_stats(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 64, 3)))
    image = torch.randn(3, 16, 16, dtype=torch.float64)
    with make_incremental_engine(chain, image, 0.0, low_memory=True) as engine:
        assert isinstance(engine, IncrementalOcclusion)
    residual = _random_stats(tvm.resnet18(num_classes=3))
    with make_incremental_engine(residual, image, 0.0, low_memory=True, bands=False) as engine:
        assert isinstance(engine, GraphOcclusion)
        boxes = _boxes(16, 16, (4,), 6)
        got = engine.outputs(boxes).output
    want = naive_occlusion_outputs(residual, image, 0.0, boxes).output
    torch.testing.assert_close(got, want, rtol=0, atol=TOL64)
