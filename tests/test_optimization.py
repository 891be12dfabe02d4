"""Feature visualization by optimization: objectives, transforms, parametrizations, the model.

References used: hand-built detector models whose optimum is known, numpy's FFT for the
Fourier parametrization, float64 loops for the diversity term, direct forward passes for the
hooked tensors, and bit-for-bit comparisons of the model before and after.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deconv.optimization import (
    COLOR_CORRELATION_SVD_SQRT,
    FourierImage,
    ImageParam,
    Jitter,
    Pad,
    PixelImage,
    RandomRotate,
    RandomScale,
    ReusedModuleError,
    Tap,
    channel,
    class_logit,
    colour_correlation_sqrt,
    diversity,
    evaluate,
    from_rgb,
    layer_activation,
    make_image,
    neuron,
    optima_objectives,
    standard_transforms,
    to_rgb,
    visualize_feature,
)
from deconv.optimization import transforms as transforms_module


class TinyNet(nn.Module):
    """Two conv blocks (inplace ReLUs, batch-norm) and a classifier: a small real CNN."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 6, 3, padding=1)
        self.relu2 = nn.ReLU(inplace=True)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 5)
        with torch.no_grad():
            for conv in (self.conv1, self.conv2):  # strong enough that images matter
                conv.weight.mul_(4.0)
            self.bn1.running_mean.uniform_(-0.1, 0.1)
            self.bn1.running_var.uniform_(0.5, 1.5)

    def forward(self, x):
        x = self.pool(self.relu1(self.bn1(self.conv1(x))))
        x = self.relu2(self.conv2(x))
        return self.fc(self.gap(x).flatten(1))


def detector(kernel: torch.Tensor) -> nn.Sequential:
    """One conv filter (``kernel`` [3, k, k], no bias) followed by a ReLU."""
    k = kernel.shape[-1]
    conv = nn.Conv2d(3, 1, k, bias=False)
    with torch.no_grad():
        conv.weight.copy_(kernel[None])
    return nn.Sequential(conv, nn.ReLU())


def diagonal_stripes(k: int, period: int = 4) -> torch.Tensor:
    """Binary diagonal stripes (constant along y = x; +1 on half of each period, else -1),
    made zero-mean, the same in every colour."""
    yy, xx = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
    pattern = torch.where((yy - xx) % period < period // 2, 1.0, -1.0)
    pattern = pattern - pattern.mean()
    return pattern.expand(3, k, k).clone()


def block_means(history: list[float], blocks: int = 4) -> list[float]:
    return [float(np.mean(part)) for part in np.array_split(np.asarray(history), blocks)]


# ---------------------------------------------------------------- optimization works


@pytest.mark.parametrize("negative", [False, True])
def test_objective_rises_on_average_and_falls_when_negative(negative):
    model = TinyNet()
    objective = channel("relu2", 3, pre_activation=True)  # the pre-activation: both ways
    result = visualize_feature(model, objective, negative=negative, size=24, steps=48, seed=1)
    means = block_means(result.history)  # 4 blocks of 12 steps
    if negative:
        assert all(a > b for a, b in zip(means, means[1:])), means
        assert result.values[0] < result.initial_values[0] - 0.3
    else:
        assert all(a < b for a, b in zip(means, means[1:])), means
        assert result.values[0] > result.initial_values[0] + 0.05
    assert result.images.shape == (1, 3, 24, 24)
    assert 0 <= float(result.images.min()) and float(result.images.max()) <= 1


def test_class_logit_and_deepdream_rise():
    model = TinyNet()
    for objective in (class_logit(3), layer_activation("conv2")):
        result = visualize_feature(model, objective, size=20, steps=24, transforms=None)
        assert result.values[0] > result.initial_values[0]


def test_planted_stripe_detector_neuron_optimum_is_the_filter():
    """Unregularized, the optimum of one unit of a linear filter + ReLU is the filter itself
    (the gradient wrt its receptive field is the kernel): the 7 x 7 window correlates with it."""
    kernel = diagonal_stripes(7)
    model = detector(kernel)
    result = visualize_feature(model, neuron("0", 0), size=15, steps=40, lr=0.1,
                               parametrization="pixel", decorrelate=False, transforms=None)
    image = result.images[0]
    window = image[:, 4:11, 4:11]  # the field of the centre unit (7, 7) of the 15 - 6 = 9 map
    corr = np.corrcoef(window.flatten().numpy(), kernel.flatten().numpy())[0, 1]
    assert corr > 0.95
    outside = torch.ones(15, 15, dtype=torch.bool)
    outside[4:11, 4:11] = False
    # untouched (no gradient there): still the random start, sigmoid(0.01 * noise)
    assert float((image[:, outside] - 0.5).abs().max()) < 0.02


def test_planted_stripe_detector_with_all_regularizers():
    """With Fourier, decorrelated colour and transforms, a channel optimum of a diagonal-stripe
    detector is made of diagonal stripes: it excites the detector and not its mirror image."""
    kernel = diagonal_stripes(7)
    model = detector(kernel)
    result = visualize_feature(model, channel("1", 0), size=40, steps=64, seed=3)
    grey = result.images[0].mean(0, keepdim=True)[None] - result.images[0].mean()
    along = F.conv2d(grey, kernel[:1, None]).abs().mean()
    mirrored = F.conv2d(grey, kernel[:1, None].flip(-1)).abs().mean()
    assert float(along) > 2 * float(mirrored)


def test_planted_colour_detector_gives_red():
    """A uniform colour is the Fourier parametrization's slowest direction (the DC term moves
    by at most lr / 4 per step) and the chromatic axes are scaled down by the decorrelated
    colour matrix, so 96 steps move the mean colour by ~0.2: enough to read the sign."""
    kernel = torch.tensor([1.0, -0.5, -0.5]).view(3, 1, 1)
    model = detector(kernel)
    result = visualize_feature(model, channel("1", 0), size=32, steps=96)
    red, green, blue = result.images[0].mean((1, 2)).tolist()
    assert red > green + 0.1 and red > blue + 0.1
    negative = visualize_feature(model, channel("0", 0), size=32, steps=96, negative=True)
    red, green, blue = negative.images[0].mean((1, 2)).tolist()
    assert red < green - 0.1 and red < blue - 0.1  # cyan: what switches the detector off


def test_positive_and_negative_in_one_batch_match_separate_runs_in_direction():
    model = TinyNet()
    obj = channel("relu2", 3, pre_activation=True)
    both = visualize_feature(model, [obj, -obj], size=20, steps=24)
    values = evaluate(model, obj, both.images)
    start = both.initial_values * torch.tensor([1.0, -1.0])
    assert values[0] > start[0] and values[1] < start[1] and values[0] > values[1] + 0.3


def test_diversity_makes_a_batch_differ():
    model = TinyNet()
    obj = channel("relu2", 1)
    plain = visualize_feature(model, obj, batch=3, size=20, steps=32, seed=0)
    diverse = visualize_feature(model, obj - 10.0 * diversity("relu2"), batch=3, size=20,
                                steps=32, seed=0)
    similarity = diversity("relu2")  # summed over the batch: 2 = three identical styles
    assert evaluate(model, similarity, diverse.images).sum() < \
        evaluate(model, similarity, plain.images).sum() - 0.1


# ---------------------------------------------------------------- objectives


def test_objective_algebra_and_diversity_against_float64_loop():
    g = torch.Generator().manual_seed(0)
    tensors = {Tap("a"): torch.randn(3, 4, 5, 5, generator=g),
               Tap("b"): torch.randn(3, 2, 5, 5, generator=g)}
    a, b = channel("a", 1), channel("b", 0)
    combined = 2 * a - b + 0.5
    expected = 2 * tensors[Tap("a")][:, 1].mean((1, 2)) - tensors[Tap("b")][:, 0].mean((1, 2))
    assert torch.allclose(combined(tensors), expected + 0.5)
    assert torch.allclose((-a)(tensors), -a(tensors))
    assert combined.taps == (Tap("a"), Tap("b"))
    x = tensors[Tap("a")].double()
    grams = []
    for i in range(3):
        f = x[i].reshape(4, -1)
        gram = f @ f.T
        grams.append(gram / gram.norm())
    naive = [sum(float((grams[i] * grams[j]).sum()) for j in range(3) if j != i) / 3
             for i in range(3)]
    expected = torch.tensor(naive, dtype=torch.float64)
    assert torch.allclose(diversity("a")(tensors).double(), expected, atol=1e-5)
    assert neuron("a", 2)(tensors).tolist() == tensors[Tap("a")][:, 2, 2, 2].tolist()
    assert torch.allclose(layer_activation("a")(tensors),
                          tensors[Tap("a")].pow(2).mean((1, 2, 3)))


def test_objective_errors_are_specific():
    model = TinyNet()
    with pytest.raises(ValueError, match="out of range"):
        evaluate(model, channel("relu2", 99), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="unknown layer"):
        evaluate(model, channel("relu9", 0), torch.rand(1, 3, 8, 8))
    with pytest.raises(TypeError):
        channel("relu2", 0) * "two"
    with pytest.raises(ValueError, match="batch"):
        visualize_feature(model, [channel("relu2", 0)] * 2, batch=3, steps=1)
    with pytest.raises(ValueError, match="where"):
        Tap("relu2", "inside")


def test_redirected_relu_hand_computed():
    from deconv.optimization import redirected_relu

    x = torch.tensor([[1.0, -2.0, -1.0], [-1.0, -2.0, -3.0]], requires_grad=True)
    y = redirected_relu(x)
    assert torch.equal(y, x.detach().clamp_min(0))
    grad = torch.tensor([[-1.0, -1.0, 2.0], [-1.0, 2.0, -3.0]])
    y.backward(grad)
    # row 0 has a live unit: the ordinary ReLU gradient; row 1 is off everywhere: gradients
    # at negative inputs pass only where a descent step raises the input (grad < 0)
    assert x.grad.tolist() == [[-1.0, 0.0, 0.0], [-1.0, 0.0, -3.0]]


def test_optima_objectives_of_a_relu_layer():
    model = TinyNet().eval()
    x = torch.randn(2, 3, 12, 12)
    positive, negative = optima_objectives(model, "relu2", 1)
    assert positive.taps == negative.taps == (Tap("relu2", "input"),)
    with torch.no_grad():
        z = model.conv2(model.pool(model.relu1(model.bn1(model.conv1(x.clone())))))[:, 1]
    assert torch.allclose(evaluate(model, positive, x), z.clamp_min(0).mean((1, 2)), atol=1e-6)
    assert torch.allclose(evaluate(model, negative, x), -z.mean((1, 2)), atol=1e-6)
    positive, negative = optima_objectives(model, "conv2", 1)  # not an activation: its output
    assert positive.taps == (Tap("conv2", "output"),)


def test_taps_see_pre_activation_and_are_safe_from_inplace_relu():
    model = TinyNet().eval()
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        conv2 = model.conv2(model.pool(model.relu1(model.bn1(model.conv1(x.clone())))))
    # input of the inplace ReLU = the conv output, negative values included
    pre = evaluate(model, channel("relu2", 3, pre_activation=True), x)
    assert torch.allclose(pre, conv2[:, 3].mean((1, 2)), atol=1e-6)
    # the conv's output is read before the inplace ReLU overwrites it, even when the forward
    # has to go on (a second tap further down keeps it running)
    both = evaluate(model, channel("conv2", 3) + 0.0 * class_logit(0), x)
    assert torch.allclose(both, conv2[:, 3].mean((1, 2)), atol=1e-6)
    assert (conv2[:, 3] < 0).any()


def test_reused_module_is_refused(model_guard):
    class Reuse(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.conv(self.relu(x)))

    model = Reuse()
    guard = model_guard(model)
    with pytest.raises(ReusedModuleError):
        visualize_feature(model, channel("relu", 0), size=8, steps=1)
    guard.check()


# ---------------------------------------------------------------- model state


def test_model_unchanged_and_no_hooks_after_normal_and_failing_runs(model_guard):
    model = TinyNet().train()
    model.conv1.weight.requires_grad_(False)
    model.eval()
    model.fc.train()  # a mixed state must come back exactly
    guard = model_guard(model)
    visualize_feature(model, channel("relu1", 0), size=16, steps=3)
    guard.check()

    def broken(tensors):
        raise RuntimeError("objective failed")

    from deconv.optimization import Objective

    with pytest.raises(RuntimeError, match="objective failed"):
        visualize_feature(model, Objective([Tap("relu1")], broken, "broken"), size=16, steps=3)
    guard.check()
    with pytest.raises(ValueError):
        visualize_feature(model, channel("relu1", 100), size=16, steps=3)
    guard.check()


def test_seeded_runs_repeat_exactly_and_seeds_differ():
    model = TinyNet()
    obj = channel("relu2", 0)
    one = visualize_feature(model, obj, size=20, steps=8, seed=5)
    two = visualize_feature(model, obj, size=20, steps=8, seed=5)
    other = visualize_feature(model, obj, size=20, steps=8, seed=6)
    assert torch.equal(one.images, two.images) and one.history == two.history
    assert not torch.equal(one.images, other.images)


# ---------------------------------------------------------------- transforms


ZERO_TRANSFORMS = [Pad(0), Jitter(0), RandomScale((1.0, 1.0)), RandomRotate(0.0),
                   standard_transforms(0, 0, (1.0, 1.0), 0.0, 0)]
TRANSFORMS = [Pad(3), Pad(2, mode="reflect"), Jitter(3), RandomScale((0.8, 1.2)),
              RandomRotate(10.0), standard_transforms(4, 3, (0.9, 1.1), 5.0, 2)]


@pytest.mark.parametrize("transform", ZERO_TRANSFORMS, ids=repr)
def test_transforms_are_identity_at_zero_magnitude(transform):
    image = torch.rand(2, 3, 11, 13)
    assert torch.equal(transform(image, torch.Generator().manual_seed(0)), image)


@pytest.mark.parametrize("transform", TRANSFORMS, ids=repr)
def test_transforms_are_seeded_and_differentiable(transform):
    image = torch.rand(1, 3, 10, 10, dtype=torch.float64, requires_grad=True)
    first = transform(image, torch.Generator().manual_seed(7))
    again = transform(image, torch.Generator().manual_seed(7))
    assert torch.equal(first, again)
    torch.autograd.gradcheck(lambda x: transform(x, torch.Generator().manual_seed(7)), (image,))
    if not isinstance(transform, Pad):  # the only deterministic one
        outs = {tuple(transform(image, torch.Generator().manual_seed(s)).flatten()[:50].tolist())
                for s in range(6)}
        assert len(outs) > 1


def test_jitter_is_a_crop_and_rotation_and_scale_are_exact(monkeypatch):
    image = torch.rand(1, 3, 12, 12)
    out = Jitter(4)(image, torch.Generator().manual_seed(1))
    assert out.shape[-2:] == (8, 8)
    assert any(torch.equal(out, image[..., y:y + 8, x:x + 8]) for y in range(5) for x in range(5))
    monkeypatch.setattr(transforms_module, "_uniform", lambda low, high, g: high)
    # +90 degrees (counter-clockwise in array coordinates with y down = rot90 with k=-1 ... )
    rotated = RandomRotate(90.0)(image)
    matches = [k for k in (1, -1) if torch.allclose(rotated, torch.rot90(image, k, (2, 3)),
                                                    atol=1e-5)]
    assert len(matches) == 1
    doubled = RandomScale((2.0, 2.0))(image)
    assert torch.allclose(doubled, F.interpolate(image, scale_factor=2, mode="bilinear"))


# ---------------------------------------------------------------- parametrizations


def test_fourier_image_matches_numpy_and_scales_as_one_over_f():
    param = FourierImage((1, 3, 8, 10), sd=0.0).double()
    # a Hermitian-consistent spectrum (that of a real image): numpy and torch agree on it
    real = np.random.default_rng(0).normal(size=(1, 3, 8, 10))
    coeffs = np.fft.rfft2(real, norm="ortho")
    with torch.no_grad():
        param.spectrum.copy_(torch.view_as_real(torch.from_numpy(coeffs)))
    fy = np.fft.fftfreq(8)[:, None]
    fx = np.fft.rfftfreq(10)[None, :]
    scale = 1.0 / np.maximum(np.sqrt(fx ** 2 + fy ** 2), 1.0 / 10)
    expected = np.fft.irfft2(coeffs * scale, s=(8, 10), norm="ortho") / 4
    assert np.allclose(param().detach().numpy(), expected, atol=1e-10)
    assert float(param.scale[0, 0]) == pytest.approx(10.0)
    assert float(param.scale[0, 5]) == pytest.approx(2.0)  # |f| = 0.5 -> 1 / f
    flat = FourierImage((1, 3, 8, 10), sd=0.0, decay_power=0.0).double()
    with torch.no_grad():
        flat.spectrum.copy_(torch.view_as_real(torch.from_numpy(coeffs)))
    assert np.allclose(flat().detach().numpy() * 4, real)  # no scaling: a unitary round trip


def test_parametrizations_round_trip_seed_and_gradient():
    pixels = torch.rand(2, 3, 9, 12) * 0.9 + 0.05
    for name in ("pixel", "fourier"):
        for decorrelate in (False, True):
            param = ImageParam.from_pixels(pixels, name, decorrelate)
            assert torch.allclose(param(), pixels, atol=1e-5), (name, decorrelate)
            a, b = (make_image((9, 12), 2, name, decorrelate,
                               generator=torch.Generator().manual_seed(3)) for _ in range(2))
            assert torch.equal(a(), b())
    spatial = FourierImage((1, 3, 6, 6), sd=0.5).double()
    torch.autograd.gradcheck(lambda s: torch.fft.irfft2(torch.view_as_complex(s) * spatial.scale,
                                                        s=(6, 6), norm="ortho"),
                             (spatial.spectrum.detach().clone().requires_grad_(True),))
    t = torch.randn(1, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda v: to_rgb(v, True), (t,))
    assert torch.allclose(from_rgb(to_rgb(t, True), True), t, atol=1e-6)
    with pytest.raises(ValueError, match="parametrization"):
        make_image(8, parametrization="wavelet")
    assert isinstance(make_image(8, parametrization="pixel").spatial, PixelImage)


def test_colour_matrix_is_a_square_root_of_the_covariance():
    root = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.5, 0.3, 0.4]], dtype=torch.float64)
    cov = root @ root.T
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(200_000, 3, generator=g, dtype=torch.float64) @ root.T
    m = colour_correlation_sqrt(samples).double()
    assert torch.allclose(m @ m.T, cov, atol=0.02)
    assert (m[:, 0] > 0).all()  # the luminance axis first, positive
    norms = m.norm(dim=0)
    assert (norms[:-1] >= norms[1:]).all()
    lucid = COLOR_CORRELATION_SVD_SQRT.double()
    assert (lucid[:, 0] > 0).all() and lucid.norm(dim=0).argmax() == 0
    assert torch.allclose(lucid.T @ lucid, torch.diag((lucid.T @ lucid).diagonal()), atol=5e-3)


# ---------------------------------------------------------------- CLI


def test_optimize_command_writes_png_and_json(tmp_path, monkeypatch, model_guard):
    import deconv
    from deconv.cli import optimize_command

    model = TinyNet()
    fake = deconv.LoadedModel(model=model, name="tiny", source="test", layers={1: "relu1"},
                              categories=None, input_size=16, mean=(0.5, 0.5, 0.5),
                              std=(0.25, 0.25, 0.25))
    monkeypatch.setattr(deconv, "load_model", lambda name, device="cpu": fake)
    parser = argparse.ArgumentParser()
    optimize_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["optimize", "--model", "zfnet", "--layer", "1", "--channel", "2",
                              "--both", "--size", "16", "--steps", "24", "--out", str(tmp_path)])
    guard = model_guard(model)
    assert args.func(args) == 0
    guard.check()
    record = json.loads((tmp_path / "optimize.json").read_text())
    assert record["layer"] == "relu1" and len(record["images"]) == 2
    for entry in record["images"]:
        assert (tmp_path / entry["file"]).stat().st_size > 0
    positive, negative = record["images"]
    assert positive["pre_activation_mean"] > negative["pre_activation_mean"] + 0.3
    assert positive["feature_map_mean"] > negative["feature_map_mean"] >= 0
