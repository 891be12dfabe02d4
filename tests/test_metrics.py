"""Metrics on hand-made cases with known answers: deletion/insertion, pointing game, sanity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from deconv.metrics import (
    blur_substrate,
    box_to_input,
    cascading_randomization,
    deletion,
    input_dependence,
    insertion,
    load_object_boxes,
    pointing_game,
    pointing_hit,
    randomize_parameters,
    spearman,
    ssim,
)
from deconv.metrics.deletion_insertion import area_under_curve, rise_kernel, saliency_order
from deconv.metrics.sanity_check import parameter_layers_top_down

H = W = 8


class ObjectFraction(nn.Module):
    """Scores ``[p, 1 - p]``, ``p`` = mean of the input over an object mask (image = 1 there)."""

    def __init__(self, mask: torch.Tensor, as_logits: bool = False):
        super().__init__()
        self.register_buffer("mask", mask.double())
        self.as_logits = as_logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = (x[:, 0] * self.mask).sum(dim=(1, 2)) / self.mask.sum()
        scores = torch.stack([p, 1 - p], dim=1)
        return scores.clamp_min(1e-300).log() if self.as_logits else scores


def block_mask(rows: slice, cols: slice) -> torch.Tensor:
    mask = torch.zeros(H, W, dtype=torch.float64)
    mask[rows, cols] = 1
    return mask


@pytest.fixture
def block():
    """A 4 x 4 object (16 of 64 pixels) away from the top-left corner, and its image."""
    mask = block_mask(slice(2, 6), slice(3, 7))
    return mask, mask.unsqueeze(0).clone()


# ---------------------------------------------------------------- deletion / insertion
def test_deletion_perfect_reversed_and_constant_maps(block):
    mask, image = block
    model = ObjectFraction(mask)
    opts = {"n_steps": 16, "apply_softmax": False}  # 4 pixels per step
    perfect = deletion(model, image, mask, 0, **opts)
    # p = 1, .75, .5, .25, then 0: area (1 + .75 + .5 + .25 - 1/2) / 16
    assert perfect.scores[:6].tolist() == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert perfect.auc == pytest.approx(2.0 / 16, abs=1e-12)
    reversed_ = deletion(model, image, 1 - mask, 0, **opts)
    assert reversed_.auc == pytest.approx(14.0 / 16, abs=1e-12)
    # constant map in raster order (tie_seed=None): the object starts on row 2 col 3 (pixel
    # 19): p stays 1 for steps 0..4 (pixels 0..19 deleted at step 5 include one object pixel)
    raster = deletion(model, image, torch.ones(H, W), 0, tie_seed=None, **opts)
    naive = _naive_deletion_scores(mask, list(range(H * W)), per_step=4)
    assert torch.allclose(raster.scores, torch.tensor(naive, dtype=torch.float64))
    # by default ties go in a seeded random order, and the curve says the map was constant
    constant = deletion(model, image, torch.ones(H, W), 0, **opts)
    order = saliency_order(torch.ones(H, W)).tolist()
    assert sorted(order) == list(range(H * W)) and order != list(range(H * W))
    naive = _naive_deletion_scores(mask, order, per_step=4)
    assert torch.allclose(constant.scores, torch.tensor(naive, dtype=torch.float64))
    assert constant.constant_map and not perfect.constant_map
    assert perfect.auc < constant.auc < reversed_.auc


def _naive_deletion_scores(mask: torch.Tensor, order: list[int], per_step: int) -> list[float]:
    flat = mask.reshape(-1).tolist()
    total = sum(flat)
    scores = []
    for k in range(len(order) // per_step + 1):
        gone = set(order[: k * per_step])
        scores.append(sum(v for i, v in enumerate(flat) if i not in gone) / total)
    return scores


def test_constant_map_on_object_in_first_rows_equals_perfect():
    mask = block_mask(slice(0, 2), slice(0, W))  # the first 16 raster pixels
    model = ObjectFraction(mask)
    curve = deletion(model, mask.unsqueeze(0), torch.zeros(H, W), 0, n_steps=16,
                     apply_softmax=False, tie_seed=None)
    assert curve.auc == pytest.approx(2.0 / 16, abs=1e-12)


def test_any_map_gives_half_when_every_pixel_counts_equally():
    model = ObjectFraction(torch.ones(H, W, dtype=torch.float64))
    image = torch.ones(1, H, W, dtype=torch.float64)
    for saliency in (torch.rand(H, W, generator=torch.Generator().manual_seed(1)),
                     torch.zeros(H, W), torch.arange(H * W).view(H, W).double()):
        assert deletion(model, image, saliency, 0, n_steps=16,
                        apply_softmax=False).auc == pytest.approx(0.5, abs=1e-12)


def test_insertion_known_answers_with_zero_substrate(block):
    mask, image = block
    model = ObjectFraction(mask)
    opts = {"n_steps": 16, "apply_softmax": False, "substrate": torch.zeros_like}
    assert insertion(model, image, mask, 0, **opts).auc == pytest.approx(14 / 16, abs=1e-12)
    assert insertion(model, image, 1 - mask, 0, **opts).auc == pytest.approx(2 / 16, abs=1e-12)


def test_softmax_of_log_scores_gives_the_same_curve(block):
    mask, image = block
    a = deletion(ObjectFraction(mask), image, mask, 0, n_steps=16, apply_softmax=False)
    b = deletion(ObjectFraction(mask, as_logits=True), image, mask, 0, n_steps=16)
    assert torch.allclose(a.scores, b.scores, atol=1e-12)


def test_curve_does_not_depend_on_batch_size(block):
    mask, image = block
    model = ObjectFraction(mask)
    sal = torch.rand(H, W, generator=torch.Generator().manual_seed(0))
    a = insertion(model, image, sal, 0, n_steps=16, batch_size=1, apply_softmax=False)
    b = insertion(model, image, sal, 0, n_steps=16, batch_size=64, apply_softmax=False)
    assert torch.equal(a.scores, b.scores)
    assert a.fractions[0] == 0 and a.fractions[-1] == 1


def test_area_is_the_trapezoid_rule():
    scores = torch.tensor([1.0, 0.3, 0.2, 0.0])
    assert area_under_curve(scores) == pytest.approx(np.trapezoid(scores.numpy(),
                                                                  np.linspace(0, 1, 4)))


def test_blur_substrate_matches_scipy_gaussian_filter():
    from scipy.ndimage import gaussian_filter

    image = torch.rand(3, 20, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ours = blur_substrate(image, kernel="gaussian")  # 11 px kernel, sigma 5, zero padding
    ref = np.stack([gaussian_filter(c, sigma=5, truncate=1.0, mode="constant")
                    for c in image.numpy()])
    assert np.allclose(ours.numpy(), ref, atol=1e-12)
    assert blur_substrate(image.unsqueeze(0)).shape == (1, 3, 20, 24)


def test_metric_restores_train_mode_and_batch_norm_statistics(model_guard):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).train()
    guard = model_guard(model)
    image = torch.randn(3, 16, 16)
    deletion(model, image, torch.rand(16, 16), 1, n_steps=4)
    assert model.training and all(m.training for m in model.modules())
    guard.check()


def test_bad_arguments_raise_specific_errors(block):
    mask, image = block
    model = ObjectFraction(mask)
    with pytest.raises(ValueError, match="reduce the channels"):
        deletion(model, image, torch.ones(3, H, W), 0)
    with pytest.raises(ValueError, match="mode"):
        from deconv.metrics import causal_curve
        causal_curve(model, image, mask, 0, mode="both")


# ---------------------------------------------------------------- pointing game
def test_pointing_game_perfect_reversed_and_constant_maps():
    box = [40, 50, 60, 70]
    yy, xx = torch.meshgrid(torch.arange(100.0), torch.arange(100.0), indexing="ij")
    perfect = -((xx - 50) ** 2 + (yy - 60) ** 2)  # peak at the box centre
    reversed_ = -perfect  # peak at the farthest corner
    constant = torch.ones(100, 100)  # points nowhere: a miss, flagged
    result = pointing_game(torch.stack([perfect, reversed_, constant]), [[box]] * 3)
    assert result.hits == [True, False, False]
    assert result.points[:2] == [(50, 60), (0, 0)]  # (0, 0) is the farthest corner
    assert result.constant == [False, False, True]
    assert result.accuracy == pytest.approx(1 / 3)


def test_pointing_tolerance_is_fifteen_pixels_euclidean():
    constant = torch.zeros(64, 64)
    constant[0, 0] = 1  # argmax (0, 0)
    assert pointing_hit(constant, [[10, 10, 20, 20]])  # sqrt(200) = 14.1 <= 15
    assert not pointing_hit(constant, [[11, 11, 20, 20]])  # sqrt(242) = 15.6
    assert pointing_hit(constant, [[15, 0, 20, 5]])  # exactly 15
    assert not pointing_hit(constant, [[16, 0, 20, 5]])
    assert pointing_hit(constant, [[30, 30, 40, 40], [0, 14, 3, 25]])  # any box
    with pytest.raises(ValueError, match="no object box"):
        pointing_hit(constant, [])


def test_box_to_input_follows_preprocess_resize_and_crop():
    from PIL import Image

    from deconv.zoo.registry import LoadedModel

    loaded = LoadedModel(model=nn.Identity(), name="t", source="", layers={}, categories=None,
                         mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    for size, box in (((451, 300), (120, 40, 300, 250)), ((300, 500), (20, 300, 200, 480))):
        photo = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        photo[box[1]:box[3], box[0]:box[2]] = 255
        x = loaded.preprocess(Image.fromarray(photo))[0]
        ys, xs = torch.nonzero(x > 0.5, as_tuple=True)
        found = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        mapped = box_to_input(box, size)
        assert np.allclose(found, mapped, atol=1.5), (found, mapped)
    assert box_to_input([0, 0, 20, 300], (451, 300)) is None  # cut off by the centre crop


def test_object_boxes_fit_the_sample_photos():
    from deconv.samples import sample_images

    boxes = load_object_boxes()
    for sample in sample_images():
        entry = boxes[sample.name]
        assert tuple(entry["size"]) == sample.image.size
        assert entry["objects"]
        for obj in entry["objects"]:
            assert all(0 <= c < 1000 for c in obj["class_ids"])
            x0, y0, x1, y1 = obj["box"]
            assert 0 <= x0 < x1 <= entry["size"][0] and 0 <= y0 < y1 <= entry["size"][1]
            assert box_to_input(obj["box"], sample.image.size) is not None


# ---------------------------------------------------------------- sanity check
def test_similarities_on_perfect_reversed_and_constant_maps():
    a = torch.rand(16, 16, generator=torch.Generator().manual_seed(3))
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert math.isnan(spearman(a, torch.ones(16, 16)))
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(torch.ones(16, 16), torch.ones(16, 16)) == pytest.approx(1.0)
    assert ssim(a, 1 - a) < 0.5


def test_spearman_matches_a_naive_rank_correlation():
    g = torch.Generator().manual_seed(4)
    a, b = torch.rand(100, generator=g).double(), torch.rand(100, generator=g).double()
    ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
    n = 100
    naive = 1 - 6 * float(((ra - rb) ** 2).sum()) / (n * (n * n - 1))
    assert spearman(a, b) == pytest.approx(naive, abs=1e-12)


def tiny_classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, 4)).eval()


def test_cascading_randomization_keeps_the_model_and_separates_methods(model_guard):
    model = tiny_classifier()
    guard = model_guard(model)
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))

    def image_only(_model, x, _target):  # ignores the model: must stay identical
        return x.abs().amax(dim=1)

    result = cascading_randomization(model, images, [0, 1],
                                     {"image_only": image_only,
                                      "gradient": _gradient_map}, seed=0)
    assert result.steps == ["trained", "7", "3", "0"]  # top layer first
    guard.check()
    assert np.allclose(result.spearman["image_only"], 1.0)
    assert np.allclose(result.ssim["image_only"], 1.0)
    assert np.allclose(result.spearman["gradient"][0], 1.0)
    assert result.spearman_abs["gradient"][-1].mean() < 0.5  # fully random: unrelated maps
    summary = result.summary()
    assert summary["image_only"]["spearman"] == [1.0] * 4


def _gradient_map(model, x, target):
    x = x.clone().requires_grad_(True)
    out = model(x)[torch.arange(x.shape[0]), torch.as_tensor(target)].sum()
    (grad,) = torch.autograd.grad(out, x)
    return grad.abs().amax(dim=1)


def test_cascading_randomization_with_registry_names_and_groups():
    model = tiny_classifier()
    images = torch.randn(1, 3, 16, 16)
    result = cascading_randomization(model, images, 2, ["captum-saliency"],
                                     groups=["7", ["3", "0"]], keep_maps=True)
    assert result.steps == ["trained", "7", "3+0"]
    assert len(result.maps["captum-saliency"]) == 3
    assert result.spearman["captum-saliency"].shape == (3, 1)


def test_randomize_parameters_keeps_scale_and_order_of_layers():
    model = tiny_classifier()
    assert parameter_layers_top_down(model, torch.randn(1, 3, 16, 16)) == ["7", "3", "0"]
    clone = tiny_classifier()
    weight = clone[3].weight.detach().clone()
    count = randomize_parameters(clone, ["3"], torch.Generator().manual_seed(0))
    assert count == 2
    assert not torch.equal(clone[3].weight, weight)
    assert float(clone[3].weight.detach().std()) == pytest.approx(float(weight.std()), rel=0.2)
    with pytest.raises(ValueError, match="no module named"):
        randomize_parameters(clone, ["nope"], torch.Generator())


def test_input_dependence_flags_maps_that_ignore_the_image():
    model = tiny_classifier()
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    pattern = torch.rand(16, 16, generator=torch.Generator().manual_seed(7))

    def fixed(_model, x, _target):  # the same map for every photo
        return pattern.expand(x.shape[0], -1, -1)

    def image_itself(_model, x, _target):
        return x[:, 0]

    rho, sim = input_dependence(model, images, [0, 1, 2], fixed)
    assert np.allclose(rho, 1.0) and np.allclose(sim, 1.0)
    rho, sim = input_dependence(model, images, [0, 1, 2], image_itself)
    expected = [spearman(images[i, 0], images[(i + 1) % 3, 0]) for i in range(3)]
    assert np.allclose(rho, expected)
    with pytest.raises(ValueError, match="at least two"):
        input_dependence(model, images[:1], 0, fixed)


# ---------------------------------------------------------------- issue 15: the departures
def test_rise_blur_kernel_is_the_authors_gkern():
    # Before: a truncated Gaussian (corner / centre 0.368) while claiming to follow RISE.
    from scipy.ndimage import convolve, gaussian_filter

    delta = np.zeros((11, 11))
    delta[5, 5] = 1
    gkern = gaussian_filter(delta, 5)  # RISE's evaluation.py: gkern(klen=11, nsig=5)
    ours = rise_kernel(11, 5.0).numpy()
    assert np.allclose(np.outer(ours, ours), gkern, atol=1e-15)
    assert gkern[0, 0] / gkern[5, 5] == pytest.approx(0.876, abs=1e-3)
    image = torch.rand(3, 20, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ref = np.stack([convolve(c, gkern, mode="constant") for c in image.numpy()])
    assert np.allclose(blur_substrate(image).numpy(), ref, atol=1e-12)


def test_area_is_exact_when_the_pixels_do_not_divide_into_the_steps():
    # Before: 32 x 32 with 100 steps gave 0.4655 for a curve whose exact area is 0.5.
    model = ObjectFraction(torch.ones(32, 32, dtype=torch.float64))
    image = torch.ones(1, 32, 32, dtype=torch.float64)
    saliency = torch.rand(32, 32, generator=torch.Generator().manual_seed(0))
    curve = deletion(model, image, saliency, 0, n_steps=100, apply_softmax=False)
    assert curve.auc == pytest.approx(0.5, abs=1e-12)
    assert area_under_curve(curve.scores) != pytest.approx(0.5, abs=1e-3)  # equal spacing


def test_a_constant_map_does_not_favour_objects_near_the_top_left():
    # Before: raster-order ties made a constant map score 0.133 or 0.881 by object position.
    corner, far = block_mask(slice(0, 4), slice(0, 4)), block_mask(slice(4, 8), slice(4, 8))
    aucs = [deletion(ObjectFraction(m), m.unsqueeze(0), torch.ones(H, W), 0, n_steps=16,
                     apply_softmax=False).auc for m in (corner, far)]
    assert abs(aucs[0] - aucs[1]) < 0.2
    assert not pointing_hit(torch.ones(64, 64), [[0, 0, 8, 8]])  # before: a hit at (0, 0)


def test_nan_or_inf_maps_are_refused_by_deletion_and_insertion(block):
    mask, image = block
    bad = mask.clone()
    bad[0, 0] = float("nan")
    for metric in (deletion, insertion):
        with pytest.raises(ValueError, match="NaN or Inf"):
            metric(ObjectFraction(mask), image, bad, 0, n_steps=4, apply_softmax=False)
    with pytest.raises(ValueError, match="NaN or Inf"):
        deletion(ObjectFraction(mask), image, mask.masked_fill(mask > 0, float("inf")), 0)


def test_constant_tensors_are_not_counted_as_randomized():
    # Before: a batch-norm weight of ones (std 0) was "randomized" to itself and counted.
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    count = randomize_parameters(model, ["0", "1"], torch.Generator().manual_seed(0))
    assert count == 2  # the conv's weight and bias; not BN's ones and zeros
    assert torch.equal(model[1].weight, torch.ones(4))


def test_spearman_nans_are_counted_in_the_summary():
    from deconv.metrics.sanity_check import SanityCheck

    table = np.array([[1.0, 1.0], [0.5, np.nan]])
    check = SanityCheck(["trained", "top"], {"m": table}, {"m": table}, {"m": table})
    summary = check.summary()["m"]
    assert summary["spearman"] == [1.0, 0.5] and summary["spearman_nan"] == [0, 1]
