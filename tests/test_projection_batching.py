"""Batched projections (one forward per image, receptive-field crops) equal one-by-one ones.

References: a per-unit autograd pass with the rectifier rules on the full image (independent of
the engines' batching and cropping), captum's neuron methods where they compute the same thing,
and the explicit engine's own one-unit-at-a-time projections.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from deconv.deconvnet import Deconvnet, GenericDeconvnet, RectifierRules


class Bottleneck(nn.Module):
    """A ResNet block: conv-BN-ReLU twice, a strided shortcut, one ReLU module reused."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                  nn.BatchNorm2d(c_out))

    def forward(self, x):
        h = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(h)) + self.down(x))


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, 1, 1), nn.BatchNorm2d(6), nn.ReLU(),
                                  nn.MaxPool2d(2))
        self.layer1 = Bottleneck(6, 6, 1)
        self.layer2 = Bottleneck(6, 8, 2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x):
        return self.head(self.layer2(self.layer1(self.stem(x))))


def _resnet() -> nn.Module:
    torch.manual_seed(0)
    model = TinyResNet().double().eval()
    for m in model.modules():  # non-trivial running statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model


def _chain() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(5, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
                         nn.Conv2d(6, 7, 3), nn.ReLU()).double()


def _images(n=3, size=40):
    torch.manual_seed(1)
    return torch.randn(n, 3, size, size, dtype=torch.float64)


def _units(model, images, layer, k=14):
    """Units on every image, several per image, borders included."""
    with torch.no_grad():
        box = {}
        handle = model.get_submodule(layer).register_forward_hook(
            lambda m, i, o: box.setdefault("out", o.clone()))
        model(images)
        handle.remove()
    _, c, h, w = box["out"].shape
    g = torch.Generator().manual_seed(2)
    units = torch.stack([torch.randint(0, images.shape[0], (k,), generator=g),
                         torch.randint(0, c, (k,), generator=g),
                         torch.randint(0, h, (k,), generator=g),
                         torch.randint(0, w, (k,), generator=g)], dim=1)
    corners = torch.tensor([[0, 0, 0, 0], [1, 1, h - 1, w - 1], [2, 0, 0, w - 1],
                            [0, 1, h - 1, 0]])
    corners[:, 0] %= images.shape[0]
    return torch.cat([units, corners])


def _one_by_one(model, rule, skip, images, layer, units, seed="unit"):
    """Independent reference: one full-image autograd pass per unit."""
    module = model.get_submodule(layer)
    maps = []
    for i, c, y, x in units.tolist():
        box = {}
        handle = module.register_forward_hook(lambda m, a, o, box=box: box.setdefault("out", o))
        image = images[i:i + 1].clone().requires_grad_(True)
        try:
            with RectifierRules(rule, skip):
                model(image)
                out = box["out"]
                value = out[0, c, y, x] if seed == "activation" else 1.0
                grad_out = torch.zeros_like(out)
                grad_out[0, c, y, x] = value
                (grad,) = torch.autograd.grad(out, image, grad_out)
        finally:
            handle.remove()
        maps.append(grad[0])
    return torch.stack(maps)


CASES = [(_chain, "4", 40, True), (_chain, "7", 32, False), (_resnet, "layer1", 40, True),
         (_resnet, "layer2", 40, False)]


@pytest.mark.parametrize("rule", ["deconvnet", "guided", "gradient"])
@pytest.mark.parametrize("make, layer, size, cropped", CASES)
def test_batched_equals_one_by_one_and_crop_is_used_where_it_pays(make, layer, size, cropped,
                                                                   rule):
    model, images = make(), _images(3, size)
    units = _units(model, images, layer)
    engine = GenericDeconvnet(model, rule=rule, windowed=False)
    with engine._run(images, layer) as run:
        assert (run.crop_plan is not None) == cropped
    reference = _one_by_one(model, rule, engine.skip_normalization, images, layer, units,
                            seed="activation")
    assert reference.abs().sum() > 0
    for chunk_size in (1, 4, 64):
        got = engine.project(images, layer, units, chunk_size=chunk_size)
        torch.testing.assert_close(got, reference, rtol=0, atol=1e-10)
    for batched in (True, False):
        full = GenericDeconvnet(model, rule=rule, crop=False, batched_backward=batched,
                                windowed=False).project(images, layer, units, chunk_size=3)
        torch.testing.assert_close(full, reference, rtol=0, atol=1e-10)


@pytest.mark.parametrize("make, layer, size, cropped", CASES)
def test_batched_equals_captum_neuron_methods(make, layer, size, cropped):
    from captum.attr import NeuronDeconvolution, NeuronGradient, NeuronGuidedBackprop

    model, images = make(), _images(3, size)
    units = _units(model, images, layer, k=6)
    module = model.get_submodule(layer)
    for rule, method in (("deconvnet", NeuronDeconvolution), ("guided", NeuronGuidedBackprop),
                         ("gradient", NeuronGradient)):
        # captum back-propagates through batch norm, so normalization is not skipped here
        ours = GenericDeconvnet(model, rule=rule, skip_normalization=False).project(
            images, layer, units, seed="unit", chunk_size=5)
        captum = method(model, module)
        for row, (i, c, y, x) in enumerate(units.tolist()):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = captum.attribute(images[i:i + 1].clone().requires_grad_(True),
                                       neuron_selector=(c, y, x))
            assert (ours[row] - ref[0]).abs().max().item() < 1e-10, (rule, row)


def test_crop_is_refused_where_it_would_not_be_exact():
    """A global-context gate (squeeze-excitation) makes every unit read the whole image."""

    class Gated(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(4, 4, 1), nn.Sigmoid())
            self.out = nn.ReLU()

        def forward(self, x):
            h = self.conv(x)
            return self.out(h * self.gate(h))

    torch.manual_seed(0)
    model, images = Gated().double(), _images(2, 32)
    units = torch.tensor([[0, 1, 5, 5], [1, 2, 30, 3], [0, 3, 16, 16]])
    engine = GenericDeconvnet(model, rule="gradient")
    with engine._run(images, "out") as run:
        assert run.crop_plan is None
    reference = _one_by_one(model, "gradient", False, images, "out", units)
    torch.testing.assert_close(engine.project(images, "out", units, seed="unit"), reference,
                               rtol=0, atol=1e-10)


def test_feature_maps_and_bfloat16_backward():
    model, images = _resnet(), _images(2, 24)
    engine = GenericDeconvnet(model, rule="guided")
    maps = engine.project_feature_map(images, "layer1", 2, chunk_size=1)
    assert maps.shape == images.shape and maps.abs().sum() > 0
    torch.testing.assert_close(engine.project_feature_map(images, "layer1", 2, chunk_size=2),
                               maps, rtol=0, atol=1e-10)
    model32, images32 = _resnet().float(), images.float()
    units = _units(model32, images32, "layer2", k=4)
    exact = GenericDeconvnet(model32).project(images32, "layer2", units)
    approx = GenericDeconvnet(model32, compute_dtype=torch.bfloat16).project(
        images32, "layer2", units)
    assert approx.dtype == torch.float32
    error = ((approx - exact).norm() / exact.norm()).item()
    assert 0 < error < 0.1
    with pytest.raises(ValueError, match="compute_dtype"):
        GenericDeconvnet(model32, compute_dtype="bf16")


def test_calls_leave_no_hooks_and_the_model_unchanged(model_guard):
    model, images = _resnet(), _images(2, 40)
    units = {layer: _units(model, images, layer, k=3) for layer in ("layer1", "layer2")}
    model.train()
    guard = model_guard(model)
    engine = GenericDeconvnet(model)
    for layer, rows in units.items():
        engine.project(images, layer, rows)
    assert model.training and all(m.training for m in model.modules())
    guard.check()


@pytest.mark.parametrize("layer", ["4", "7"])
def test_explicit_batched_equals_one_by_one(layer):
    model, images = _chain(), _images()
    units = _units(model, images, layer)
    engine = Deconvnet(model)
    single = torch.cat([engine.project(images, layer, row[None]) for row in units])
    for chunk_size in (1, 5, 64):
        torch.testing.assert_close(engine.project(images, layer, units, chunk_size=chunk_size),
                                   single, rtol=0, atol=1e-10)
    generic = GenericDeconvnet(model, windowed=False).project(images, layer, units)
    torch.testing.assert_close(single, generic, rtol=0, atol=1e-10)


def test_generic_takes_the_explicit_way_only_where_it_computes_the_same():
    chain, resnet, images = _chain(), _resnet(), _images()
    assert GenericDeconvnet(chain).uses_explicit_path("4")
    assert not GenericDeconvnet(chain, rule="guided").uses_explicit_path("4")
    assert not GenericDeconvnet(chain, compute_dtype=torch.bfloat16).uses_explicit_path("4")
    assert not GenericDeconvnet(resnet).uses_explicit_path("layer1")  # residual: not a chain
    units = _units(chain, images, "7")
    reference = _one_by_one(chain, "deconvnet", True, images, "7", units, seed="activation")
    torch.testing.assert_close(GenericDeconvnet(chain).project(images, "7", units), reference,
                               rtol=0, atol=1e-10)
