"""The generic (autograd) engine: ReLU rules, every form of ReLU, captum, and the zoo."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import deconv
from deconv.deconvnet import Deconvnet, GenericDeconvnet, RectifierRules
from deconv.zoo import ZFNetConfig


class Block(nn.Module):
    """conv -> ReLU -> conv -> (+ input) -> ReLU -> max-pool -> conv -> ReLU, with the ReLUs
    written in one of several ways; the weights are the same for every variant."""

    def __init__(self, style: str):
        super().__init__()
        torch.manual_seed(0)
        self.style = style
        self.conv1 = nn.Conv2d(3, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1)
        self.pool = nn.MaxPool2d(3, 2)
        self.conv3 = nn.Conv2d(3, 4, 3)
        if style == "modules":  # the reference: three distinct nn.ReLU modules
            self.relu1, self.relu2, self.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU()
        elif style == "inplace":
            self.relu1, self.relu2 = nn.ReLU(inplace=True), nn.ReLU(inplace=True)
            self.relu3 = nn.ReLU(inplace=True)
        elif style == "reused":
            self.relu = nn.ReLU(inplace=True)
        self.out = nn.Identity()

    def act(self, i: int, x: torch.Tensor) -> torch.Tensor:
        if self.style in ("modules", "inplace"):
            return getattr(self, f"relu{i}")(x)
        if self.style == "reused":
            return self.relu(x)
        if self.style == "functional":
            return F.relu(x)
        if self.style == "torch_relu_":
            return torch.relu_(x)
        if self.style == "clamp":
            return x.clamp(min=0)
        if self.style == "method":
            return x.relu()
        raise AssertionError(self.style)

    def forward(self, x):
        h = self.act(1, self.conv1(x))
        h = self.act(2, self.conv2(h) + x)
        return self.out(self.act(3, self.conv3(self.pool(h))))


STYLES = ["inplace", "reused", "functional", "torch_relu_", "clamp", "method"]


def _images():
    torch.manual_seed(1)
    return torch.randn(2, 3, 16, 16, dtype=torch.float64)


def _units():
    return torch.tensor([[0, 0, 1, 1], [1, 2, 0, 3], [1, 3, 3, 2], [0, 1, 2, 0]])


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("rule", ["deconvnet", "guided", "gradient"])
def test_every_form_of_relu_gets_the_rule(style, rule):
    reference = Block("modules").double()
    variant = Block(style).double()
    images, units = _images(), _units()
    expected = GenericDeconvnet(reference, rule=rule).project(images, "out", units, seed="unit")
    got = GenericDeconvnet(variant, rule=rule).project(images, "out", units, seed="unit")
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_rules_differ_so_the_style_test_can_fail():
    model, images, units = Block("functional").double(), _images(), _units()
    maps = {rule: GenericDeconvnet(model, rule=rule).project(images, "out", units, seed="unit")
            for rule in ("deconvnet", "guided", "gradient")}
    assert not torch.allclose(maps["deconvnet"], maps["gradient"])
    assert not torch.allclose(maps["guided"], maps["gradient"])
    assert not torch.allclose(maps["deconvnet"], maps["guided"])


def test_reference_matches_captum_neuron_deconvolution_and_guided_backprop():
    from captum.attr import NeuronDeconvolution, NeuronGuidedBackprop

    model, images, units = Block("modules").double(), _images(), _units()
    for rule, method in (("deconvnet", NeuronDeconvolution), ("guided", NeuronGuidedBackprop)):
        ours = GenericDeconvnet(model, rule=rule).project(images, "out", units, seed="unit")
        captum = method(model, model.out)
        for row, (i, c, y, x) in enumerate(units.tolist()):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = captum.attribute(images[i:i + 1].clone().requires_grad_(True),
                                       neuron_selector=(c, y, x))
            assert (ours[row] - ref[0]).abs().max().item() < 1e-10


def test_guided_attribute_equals_captum_guided_backprop_and_gradient_equals_autograd():
    from captum.attr import GuidedBackprop

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 5, 3),
                          nn.ReLU(), nn.Flatten(), nn.Linear(5 * 2 * 2, 6)).double()
    images = torch.randn(3, 3, 10, 10, dtype=torch.float64)
    target = torch.tensor([0, 4, 2])
    ours = GenericDeconvnet(model, rule="guided").attribute(images, target, chunk_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = GuidedBackprop(model).attribute(images.clone().requires_grad_(True), target=target)
    assert (ours - ref).abs().max().item() < 1e-10
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)
    plain = GenericDeconvnet(model, rule="gradient").attribute(images, target)
    torch.testing.assert_close(plain, grad, rtol=0, atol=1e-12)


def test_relu6_forms_agree_and_gradient_rule_is_plain_autograd():
    class Six(nn.Module):
        def __init__(self, style):
            super().__init__()
            torch.manual_seed(0)
            self.style, self.conv1, self.conv2 = style, nn.Conv2d(3, 4, 3), nn.Conv2d(4, 2, 3)
            self.act = nn.ReLU6(inplace=True)
            self.out = nn.Identity()

        def forward(self, x):
            h = 4 * self.conv1(x)  # large enough that some units exceed 6
            if self.style == "module":
                h = self.act(h)
            elif self.style == "relu6":
                h = F.relu6(h)
            elif self.style == "hardtanh":
                h = F.hardtanh(h, 0.0, 6.0)
            else:
                h = torch.clamp(h, 0, 6)
            return self.out(self.conv2(h))

    images = _images()
    units = torch.tensor([[0, 0, 3, 3], [1, 1, 5, 2]])
    for rule in ("deconvnet", "guided", "gradient"):
        maps = [GenericDeconvnet(Six(s).double(), rule=rule).project(images, "out", units, "unit")
                for s in ("module", "relu6", "hardtanh", "clamp")]
        for other in maps[1:]:
            torch.testing.assert_close(other, maps[0], rtol=0, atol=1e-12)
    model = Six("module").double()
    x = images[:1].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x)[0, 0, 3, 3], x)
    ours = GenericDeconvnet(model, rule="gradient").project(images, "out", units[:1], "unit")
    torch.testing.assert_close(ours[0], grad[0], rtol=0, atol=1e-12)


@pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")
def test_other_nonlinearities_warn_and_torchscript_is_refused():
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.SiLU(), nn.Conv2d(2, 2, 3))
    with pytest.warns(UserWarning, match="silu"):
        GenericDeconvnet(model).project(torch.randn(1, 3, 8, 8), "2", torch.tensor([[0, 0, 0, 0]]))
    scripted = torch.jit.script(nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU()))
    with pytest.raises(TypeError, match="TorchScript"):
        GenericDeconvnet(scripted)


def test_mode_counts_every_relu_call():
    model = Block("reused").double()
    with RectifierRules("deconvnet") as rules:
        model(_images())
    assert rules.count == 3


def test_reused_module_as_layer_is_refused():
    model = Block("reused").double()
    with pytest.raises(ValueError, match="runs 3 times"):
        GenericDeconvnet(model).project(_images(), "relu", _units())


def test_rule_name_is_checked():
    with pytest.raises(ValueError, match="rule"):
        GenericDeconvnet(nn.ReLU(), rule="lrp")


def _zoo():
    small = ZFNetConfig(input_size=96, num_classes=10, fc=64)
    cases = [(deconv.load_model("zfnet", config=small), 96),
             (deconv.load_model("alexnet", weights=None), 96),
             (deconv.load_model("vgg16", weights=None), 64)]
    try:
        cases.append((deconv.load_model("hed-vgg16"), 64))
    except Exception:  # weights package not installed
        pass
    return cases


def test_explicit_equals_generic_deconvnet_on_every_sequential_zoo_model():
    torch.manual_seed(0)
    for loaded, size in _zoo():
        images = torch.randn(2, 3, size, size)
        explicit = Deconvnet(loaded)
        generic = GenericDeconvnet(loaded, rule="deconvnet", windowed=False)
        for number in sorted(loaded.layers):
            top = explicit.top_units(images, number, 3)
            a = explicit.project(images, number, top.units)
            b = generic.project(images, number, top.units)
            scale = b.abs().max()
            assert scale > 0, (loaded.name, number)
            assert ((a - b).abs().max() / scale).item() < 1e-4, (loaded.name, number)


def test_efficientnet_lite0_projects_through_relu6_and_residuals():
    try:
        loaded = deconv.load_model("efficientnet-lite0")
    except Exception:
        pytest.skip("efficientnet-lite0 weights are not installed")
    images = torch.randn(2, 3, 64, 64)
    engine = GenericDeconvnet(loaded)
    top = engine.top_units(images, 4, 3)
    out = engine.project(images, 4, top.units)
    assert out.shape == (3, 3, 64, 64) and torch.isfinite(out).all() and out.abs().sum() > 0


def test_hook_added_after_a_first_call_falls_back_to_autograd():
    """The chain check is cached, the user-hook check is not: a forward hook registered after
    the first call sends the next call down the autograd path instead of raising."""
    torch.manual_seed(0)
    chain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                torch.nn.Conv2d(4, 5, 3), torch.nn.ReLU()).double().eval()
    images = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    units = torch.tensor([[0, 1, 2, 2], [1, 3, 1, 4]])
    engine = GenericDeconvnet(chain)
    first = engine.project(images, "4", units)
    assert engine.uses_explicit_path("4")
    handle = chain[3].register_forward_hook(lambda *_: None)
    try:
        assert not engine.uses_explicit_path("4")
        again = engine.project(images, "4", units)
    finally:
        handle.remove()
    assert engine.uses_explicit_path("4")
    torch.testing.assert_close(again, first, rtol=1e-10, atol=1e-12)
