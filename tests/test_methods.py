"""The method registry: every method runs, returns maps of the input's size, leaves no trace."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deconv.methods import (
    attribute,
    last_conv_layer,
    list_methods,
    method_info,
    reduce_channels,
    register_method,
)
from deconv.methods.registry import as_target
from deconv.plots import scale_for_display

SMALL_OCCLUSION = {"patch": 4, "stride": 2}


def options_for(method: str) -> dict:
    if "occlusion" in method:
        return dict(SMALL_OCCLUSION)
    if "integrated" in method:
        return {"n_steps": 8}
    return {}


def tiny_model(inplace: bool = False, batch_norm: bool = True) -> nn.Module:
    """Conv / ReLU / max-pool / conv / (BN) / ReLU / pool / linear, distinct ReLU modules."""
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=inplace), nn.MaxPool2d(2),
              nn.Conv2d(6, 8, 3, padding=1)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(8))
    layers += [nn.ReLU(inplace=inplace), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 5)]
    model = nn.Sequential(*layers).eval()
    if batch_norm:
        with torch.no_grad():  # non-trivial statistics, so a BN bug would show
            model[4].running_mean.uniform_(-0.5, 0.5)
            model[4].running_var.uniform_(0.5, 2.0)
    return model


def test_registry_lists_ours_and_captums_methods():
    assert list_methods("ours") == ["deconvnet", "guided-backprop", "occlusion"]
    assert set(list_methods("captum")) == {
        "captum-saliency", "captum-input-x-gradient", "captum-deconvolution",
        "captum-guided-backprop", "captum-integrated-gradients", "captum-occlusion",
        "captum-layer-gradcam", "captum-guided-gradcam"}
    for name in list_methods():
        info = method_info(name)
        assert info.description and info.reduction in ("abs_max", "sum", "mean")


@pytest.mark.parametrize("inplace", [False, True])
def test_every_method_runs_returns_image_sized_maps_and_leaves_no_trace(inplace, model_guard):
    model = tiny_model(inplace=inplace)
    guard = model_guard(model)
    images = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    for name in list_methods():
        maps = attribute(name, model, images, [1, 3], **options_for(name))
        assert maps.shape == (2, 12, 12), name
        assert torch.isfinite(maps).all(), name
        assert maps.abs().sum() > 0, name
        assert not maps.requires_grad
        guard.check()
        full = attribute(name, model, images[:1], 1, reduction="none", **options_for(name))
        assert full.dim() == 4 and full.shape[-2:] == (12, 12), name


def test_model_in_train_mode_is_restored_and_statistics_kept(model_guard):
    model = tiny_model().train()
    guard = model_guard(model)
    attribute("captum-saliency", model, torch.randn(3, 3, 12, 12), 0)
    guard.check()


def test_failing_call_leaves_no_hooks_and_restores_flags(model_guard):
    model = tiny_model(inplace=True)
    guard = model_guard(model)
    with pytest.raises(ValueError):
        attribute("captum-layer-gradcam", model, torch.randn(1, 3, 12, 12), 0, layer="nope")
    with pytest.raises(ValueError):
        attribute("occlusion", model, torch.randn(1, 3, 12, 12), 0, patch=40, stride=2)
    guard.check()


def test_our_deconvnet_equals_captum_deconvolution_on_a_captum_compatible_model():
    model = tiny_model(batch_norm=False).double()
    images = torch.randn(3, 3, 12, 12, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(2))
    ours = attribute("deconvnet", model, images, [0, 2, 4], reduction="none")
    theirs = attribute("captum-deconvolution", model, images, [0, 2, 4], reduction="none")
    assert ours.abs().sum() > 0
    assert torch.allclose(ours, theirs.to(ours.dtype), atol=1e-12, rtol=1e-9)
    # ... and it is not the plain gradient (the rule matters on this model)
    gradient = attribute("captum-saliency", model, images, [0, 2, 4], reduction="none")
    assert not torch.allclose(ours, gradient.to(ours.dtype), atol=1e-6)


def test_with_relu6_captum_deconvolution_is_the_plain_gradient_and_ours_is_not():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU6(), nn.Conv2d(6, 6, 3),
                          nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(6, 4)).double().eval()
    images = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    captum_deconv = attribute("captum-deconvolution", model, images, 1, reduction="none")
    gradient = attribute("captum-saliency", model, images, 1, reduction="none")
    ours = attribute("deconvnet", model, images, 1, reduction="none")
    assert torch.equal(captum_deconv, gradient)
    assert not torch.allclose(ours, gradient, atol=1e-6)


def test_our_guided_backprop_equals_captums_on_a_captum_compatible_model():
    model = tiny_model(inplace=True).double()  # BN: guided backprop goes through it like captum
    images = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    ours = attribute("guided-backprop", model, images, [0, 3], reduction="none")
    theirs = attribute("captum-guided-backprop", model, images, [0, 3], reduction="none")
    assert ours.abs().sum() > 0
    assert torch.allclose(ours, theirs, atol=1e-12, rtol=1e-9)


def test_our_occlusion_equals_captums_occlusion():
    model = tiny_model().double()
    images = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    ours = attribute("occlusion", model, images, [1, 2], **SMALL_OCCLUSION)
    theirs = attribute("captum-occlusion", model, images, [1, 2], **SMALL_OCCLUSION)
    assert torch.allclose(ours, theirs.to(ours.dtype), atol=1e-10)


def test_integrated_gradients_completeness_on_a_smooth_model():
    torch.manual_seed(4)  # smooth, so 32 Gauss-Legendre points integrate the path almost exactly
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Flatten(),
                          nn.Linear(4 * 10 * 10, 3)).double().eval()
    image = torch.randn(1, 3, 12, 12, dtype=torch.float64)
    ig = attribute("captum-integrated-gradients", model, image, 2, n_steps=32)
    assert ig.dtype == torch.float64
    with torch.no_grad():
        expected = model(image)[0, 2] - model(torch.zeros_like(image))[0, 2]
    assert float(ig.sum()) == pytest.approx(float(expected), rel=1e-8)


def test_gradcam_default_layer_is_the_rectified_last_conv():
    model = tiny_model()
    assert last_conv_layer(model, (3, 12, 12)) == "5"  # conv 3 -> BN 4 -> ReLU 5
    from deconv.zoo import load_model

    lite = load_model("efficientnet-lite0", weights=None).model
    assert last_conv_layer(lite) == "head.act"
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        last_conv_layer(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), (3, 2, 2))


def test_channel_reductions_on_a_hand_made_tensor():
    a = torch.tensor([[1.0, -2.0]]).view(1, 2, 1, 1).expand(1, 2, 2, 2)  # channels 1 and -2
    assert torch.equal(reduce_channels(a, "abs_max"), torch.full((1, 2, 2), 2.0))
    assert torch.equal(reduce_channels(a, "abs_sum"), torch.full((1, 2, 2), 3.0))
    assert torch.equal(reduce_channels(a, "sum"), torch.full((1, 2, 2), -1.0))
    assert torch.equal(reduce_channels(a, "mean"), torch.full((1, 2, 2), -0.5))
    assert reduce_channels(a, "none") is a
    with pytest.raises(ValueError, match="unknown reduction"):
        reduce_channels(a, "median")


def test_display_normalization_keeps_sign_and_survives_zero_maps():
    maps = torch.stack([torch.zeros(4, 4), torch.linspace(-2, 1, 16).view(4, 4)])
    shown = scale_for_display(maps, percentile=100)
    assert torch.equal(shown[0], torch.zeros(4, 4))
    assert shown[1].min() == -1 and shown[1].max() == pytest.approx(0.5)
    assert (torch.sign(shown[1]) == torch.sign(maps[1])).all()


def test_argument_errors_are_specific():
    model = tiny_model()
    with pytest.raises(KeyError, match="choose one of"):
        attribute("lime", model, torch.randn(1, 3, 12, 12), 0)
    with pytest.raises(ValueError, match="one per image"):
        as_target([1, 2, 3], 2)
    with pytest.raises(TypeError):
        as_target(torch.tensor([0.5]), 1)
    with pytest.raises(ValueError, match="already registered"):
        register_method("captum-saliency", family="captum", reduction="abs_max")
    with pytest.raises(ValueError, match="reduction"):
        register_method("new-method", family="ours", reduction="median")
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        attribute("captum-saliency", model, torch.randn(12, 12), 0)


def test_compare_command_lists_methods_and_writes_the_grid(tmp_path, capsys):
    import argparse
    import json

    from deconv.cli import compare_command

    parser = argparse.ArgumentParser()
    compare_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["compare", "--list"])
    assert args.func(args) == 0
    assert "captum-guided-gradcam" in capsys.readouterr().out
    args = parser.parse_args(["compare", "--image", "sample:coffee", "--methods", "deconvnet",
                              "--metrics", "--out", str(tmp_path)])
    assert args.func(args) == 0
    record = json.loads((tmp_path / "compare.json").read_text())
    assert record["targets"] == ["espresso"]
    assert set(record["methods"]) == {"deconvnet"}
    assert 0 <= record["methods"]["deconvnet"]["insertion_auc"][0] <= 1
    assert (tmp_path / "compare.png").stat().st_size > 0
    with pytest.raises(SystemExit):  # the choices come from the registry
        parser.parse_args(["compare", "--methods", "lime", "--out", str(tmp_path)])
    assert "invalid choice: 'lime'" in capsys.readouterr().err
