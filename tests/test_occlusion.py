"""Occlusion sweep: exact against a one-forward-per-position loop, captum, a planted detector."""

from __future__ import annotations

import pytest
import torch
from captum.attr import Occlusion
from torch import nn

from deconv.occlusion import (
    gaussian_blur,
    grid_starts,
    make_fill,
    occluder_boxes,
    occlusion_engines,
    occlusion_sweep,
    window_average,
)
from deconv.zoo.registry import LoadedModel


def tiny_classifier(dtype=torch.float64, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5),
    )
    return model.to(dtype).eval()


def image(shape=(3, 13, 11), dtype=torch.float64, seed: int = 1) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def loop_reference(model, x, fill_value, patch, stride, target, layer=None, channel=None):
    """One forward per position, no batching, float64 bookkeeping."""
    _, h, w = x.shape
    probs, totals = [], []
    store = {}
    handle = None
    if layer is not None:
        handle = model.get_submodule(layer).register_forward_hook(
            lambda m, i, o: store.__setitem__("out", o.clone()))
    try:
        for y in grid_starts(h, patch, stride):
            for xx in grid_starts(w, patch, stride):
                occluded = x.clone()
                occluded[:, y:y + patch, xx:xx + patch] = fill_value
                with torch.no_grad():
                    probs.append(torch.softmax(model(occluded[None]), dim=1)[0, target])
                if layer is not None:
                    totals.append(store["out"][0, channel].sum())
    finally:
        if handle is not None:
            handle.remove()
    return torch.stack(probs), (torch.stack(totals) if totals else None)


@pytest.mark.parametrize("batch_size", [1, 2, 5, 7, 1000])
def test_probability_map_equals_one_forward_per_position(batch_size):
    """Bit-exact with batch 1; with larger batches BLAS sums nn.Linear in another order
    (gemm instead of gemv), so probabilities may differ in the last bit (float64: ~1e-17)."""
    model, x = tiny_classifier(), image()
    result = occlusion_sweep(model, x, patch=4, stride=3, batch_size=batch_size, target=2,
                             layer="3", channel=1, progress=False, method="naive")
    probs, totals = loop_reference(model, x, 0.0, 4, 3, 2, layer="3", channel=1)
    assert result.grid_shape == (4, 4)  # ceil((13-4)/3)+1, ceil((11-4)/3)+1
    if batch_size == 1:
        assert torch.equal(result.probability.reshape(-1), probs)
    torch.testing.assert_close(result.probability.reshape(-1), probs, rtol=0, atol=1e-15)
    assert torch.equal(result.feature_total.reshape(-1), totals)  # convolutions: exact
    # the default ("auto") takes the exact incremental engine here: same numbers to 1e-12
    auto = occlusion_sweep(model, x, patch=4, stride=3, batch_size=batch_size, target=2,
                           layer="3", channel=1, progress=False)
    assert auto.method == "incremental"
    torch.testing.assert_close(auto.probability.reshape(-1), probs, rtol=0, atol=1e-12)
    torch.testing.assert_close(auto.feature_total.reshape(-1), totals, rtol=0, atol=1e-12)


def test_float32_batches_agree_with_loop():
    model, x = tiny_classifier(torch.float32), image(dtype=torch.float32)
    probs, _ = loop_reference(model, x, 0.0, 5, 2, 0)
    for batch_size in (1, 3, 64):
        result = occlusion_sweep(model, x, patch=5, stride=2, target=0, batch_size=batch_size,
                                 progress=False)
        torch.testing.assert_close(result.probability.reshape(-1), probs, rtol=0, atol=1e-6)


def test_label_map_is_argmax_of_probabilities():
    model, x = tiny_classifier(), image()
    result = occlusion_sweep(model, x, patch=3, stride=2, progress=False)
    assert result.target == result.base_label
    for row in range(result.grid_shape[0]):
        for col in range(result.grid_shape[1]):
            y0, y1, x0, x1 = result.box(row, col)
            occluded = x.clone()
            occluded[:, y0:y1, x0:x1] = 0
            with torch.no_grad():
                p = torch.softmax(model(occluded[None]), dim=1)[0]
            assert int(result.label[row, col]) == int(p.argmax())
            assert float(result.label_probability[row, col]) == pytest.approx(float(p.max()),
                                                                             abs=1e-12)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-6)])
@pytest.mark.parametrize("patch,stride,baseline", [(4, 3, 0.0), (5, 2, 0.7), (13, 4, -0.3)])
def test_drop_map_equals_captum_occlusion(dtype, tol, patch, stride, baseline):
    model, x = tiny_classifier(dtype), image(dtype=dtype)
    patch = min(patch, 11)
    wrapped = nn.Sequential(model, nn.Softmax(dim=1))
    expected = Occlusion(wrapped).attribute(
        x[None], sliding_window_shapes=(3, patch, patch), strides=(3, stride, stride),
        baselines=baseline, target=3, perturbations_per_eval=4)[0]
    result = occlusion_sweep(model, x, patch=patch, stride=stride, fill=baseline, target=3,
                             batch_size=3, progress=False)
    for channel in range(3):
        torch.testing.assert_close(result.drop_map, expected[channel].double(), rtol=0, atol=tol)


class SquareDetector(nn.Module):
    """Logit of class 1: how strongly a bright 4x4 square appears anywhere (max of a box sum)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 4, bias=False)
        nn.init.constant_(self.conv.weight, 1 / 48)
        self.pool = nn.AdaptiveMaxPool2d(1)

    def forward(self, x):
        score = self.pool(self.conv(x)).flatten(1)
        return torch.cat([torch.zeros_like(score), 8 * (score - 0.5)], dim=1)


def test_planted_square_gives_lowest_probability_where_occluded():
    x = 0.1 * torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(0))
    x[:, 14:18, 5:9] = 1.0  # the planted square
    model = SquareDetector().eval()
    result = occlusion_sweep(model, x, patch=6, stride=2, fill="zero", progress=False)
    assert result.target == 1
    y0, y1, x0, x1 = result.boxes[int(result.probability.argmin())].tolist()
    assert y0 <= 14 and y1 >= 18 and x0 <= 5 and x1 >= 9
    assert float(result.probability.min()) < 0.5 < result.base_probability
    # the per-pixel drop is largest on the square
    peak = int(result.drop_map.argmax())
    assert 14 <= peak // 24 < 18 and 5 <= peak % 24 < 9


def test_feature_map_strongest_and_feature_only_model(model_guard):
    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU(), nn.Conv2d(5, 7, 3), nn.ReLU())
    features = features.double().eval()
    guard = model_guard(features)
    x = image((3, 12, 12))
    with torch.no_grad():
        base = features(x[None])[0]
    strongest = int(base.reshape(7, -1).max(dim=1).values.argmax())
    result = occlusion_sweep(features, x, patch=4, stride=4, layer="3", channel="strongest",
                             progress=False)
    assert result.probability is None and result.drop_map is None
    assert result.feature_channel == strongest
    assert result.base_feature_total == pytest.approx(float(base[strongest].sum()))
    peak = int(base[strongest].argmax())
    assert result.feature_peak == (peak // 8, peak % 8)
    with torch.no_grad():
        for (y0, y1, x0, x1), total in zip(result.boxes.tolist(), result.feature_total.flatten()):
            occluded = x.clone()
            occluded[:, y0:y1, x0:x1] = 0
            assert float(total) == pytest.approx(float(features(occluded[None])[0, strongest]
                                                        .sum()), rel=1e-12)
    guard.check()


def _loaded(module, mean, std, categories=None) -> LoadedModel:
    return LoadedModel(model=module, name="tiny", source="test", layers={1: "1"},
                       categories=categories, input_size=12, mean=mean, std=std)


def test_feature_model_sees_the_same_occluded_picture():
    classifier = _loaded(tiny_classifier(torch.float32), (0.5, 0.4, 0.3), (0.2, 0.25, 0.3),
                         categories=list("abcde"))
    torch.manual_seed(3)
    feat = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    feat_loaded = _loaded(feat, (0.45, 0.45, 0.4), (1 / 255, 1 / 255, 1 / 255))
    pixels = torch.rand(3, 12, 12, generator=torch.Generator().manual_seed(5))
    x = classifier.normalize(pixels)
    result = occlusion_sweep(classifier, x, patch=5, stride=3, layer=1, channel=2,
                             feature_model=feat_loaded, progress=False)
    mean_pixel = torch.tensor(classifier.mean).view(3, 1, 1)
    with torch.no_grad():
        for (y0, y1, x0, x1), total in zip(result.boxes.tolist(), result.feature_total.flatten()):
            occluded = pixels.clone()
            occluded[:, y0:y1, x0:x1] = mean_pixel  # the classifier's grey, in pixels
            expected = feat(feat_loaded.normalize(occluded)[None])[0, 2].sum()
            torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-3)
    assert result.feature_model_name == "tiny" and result.target_name in "abcde"


def test_model_and_state_unchanged_and_no_hooks_after_errors(model_guard):
    model = tiny_classifier()
    model.train()
    model[1].inplace = True
    guard = model_guard(model)
    with pytest.warns(UserWarning, match="training mode"):
        occlusion_sweep(model, image(), patch=4, stride=4, layer="4", channel=0, progress=False)
    with pytest.raises(ValueError, match="out of range"), pytest.warns(UserWarning):
        occlusion_sweep(model, image(), patch=4, stride=4, layer="4", channel=99, progress=False)
    assert model.training and model[1].inplace
    guard.check()


class FailingModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3).double()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("boom")
        return self.conv(x).flatten(1)


def test_no_hook_left_when_forward_raises(model_guard):
    model = FailingModel().eval()
    guard = model_guard(model)
    with pytest.raises(RuntimeError, match="boom"):
        occlusion_sweep(model, image(), patch=4, stride=4, layer="conv", channel=0,
                        progress=False)
    guard.check()


@pytest.mark.parametrize("kwargs,error,match", [
    ({"patch": 14, "stride": 2}, ValueError, "larger than the image"),
    ({"patch": 3, "stride": 0}, ValueError, "at least 1"),
    ({"patch": 0, "stride": 1}, ValueError, "at least 1"),
    ({"patch": 3.5, "stride": 1}, TypeError, "int"),
    ({"patch": 3, "stride": 1, "target": 5}, ValueError, "out of range"),
    ({"patch": 3, "stride": 1, "target": "cat"}, ValueError, "no categories"),
    ({"patch": 3, "stride": 1, "layer": "nope", "channel": 0}, ValueError, "unknown layer"),
    ({"patch": 3, "stride": 1, "layer": "0", "channel": "best"}, TypeError, "strongest"),
    ({"patch": 3, "stride": 1, "fill": "grey"}, ValueError, "unknown fill"),
    ({"patch": 3, "stride": 1, "fill": float("nan")}, ValueError, "finite"),
    ({"patch": 3, "stride": 1, "fill": "black"}, ValueError, "normalization"),
    ({"patch": 3, "stride": 1, "method": "magic"}, ValueError, "unknown method"),
    ({"patch": 3, "stride": 1, "batch_size": 0}, ValueError, "batch_size"),
])
def test_bad_arguments_give_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        occlusion_sweep(tiny_classifier(), image(), progress=False, **kwargs)


def test_bad_images_give_clear_errors():
    model = tiny_classifier()
    with pytest.raises(ValueError, match="NaN"):
        bad = image()
        bad[0, 0, 0] = float("nan")
        occlusion_sweep(model, bad, patch=3, stride=1, progress=False)
    with pytest.raises(ValueError, match="one image"):
        occlusion_sweep(model, image((2, 3, 13, 11)), patch=3, stride=1, progress=False)
    with pytest.raises(TypeError, match="float"):
        occlusion_sweep(model, torch.zeros(3, 8, 8, dtype=torch.uint8), patch=3, stride=1,
                        progress=False)
    with pytest.raises(TypeError, match="differs from the model"):
        occlusion_sweep(model, image(dtype=torch.float32), patch=3, stride=1, progress=False)
    with pytest.raises(TypeError, match="LoadedModel"):
        occlusion_sweep(model, torch.zeros(8, 8, 3).numpy(), patch=3, stride=1, progress=False)
    with pytest.raises(TypeError, match="nn.Module"):
        occlusion_sweep("vgg", image(), patch=3, stride=1, progress=False)


def test_grid_matches_captum_count_and_clips_last_window():
    assert grid_starts(13, 4, 3) == [0, 3, 6, 9]
    assert grid_starts(10, 10, 3) == [0]
    boxes, rows, cols = occluder_boxes(10, 7, (3, 3), (4, 4))
    assert (rows, cols) == (3, 2)
    assert boxes[-1].tolist() == [8, 10, 4, 7]  # clipped at the bottom border


def test_window_average_hand_case():
    boxes = torch.tensor([[0, 2, 0, 2], [0, 2, 1, 3]])
    out = window_average(torch.tensor([1.0, 3.0]), boxes, 3, 3)
    expected = torch.tensor([[1, 2, 3], [1, 2, 3], [float("nan")] * 3], dtype=torch.float64)
    torch.testing.assert_close(out, expected, equal_nan=True)


def test_fills():
    x = image((3, 9, 9))
    fill, _ = make_fill("image_mean", x, patch=(3, 3))
    torch.testing.assert_close(fill[:, 4, 4], x.mean(dim=(1, 2)))
    fill, _ = make_fill(torch.tensor([1.0, 2.0, 3.0]), x, patch=(3, 3))
    assert fill[:, 0, 0].tolist() == [1.0, 2.0, 3.0]
    loaded = _loaded(tiny_classifier(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    fill, _ = make_fill("black", x, patch=(3, 3), normalize=loaded.normalize)
    assert torch.allclose(fill, torch.full_like(x, -2.0))
    constant = torch.full((3, 9, 9), 0.3, dtype=torch.float64)
    torch.testing.assert_close(gaussian_blur(constant, 2.0), constant)
    fill, _ = make_fill("blur", x, patch=(8, 8))
    assert fill.shape == x.shape and fill.std() < x.std()
    with pytest.raises(ValueError, match="shape"):
        make_fill(torch.zeros(2), x, patch=(3, 3))


def test_blur_fill_is_what_the_window_sees():
    model, x = tiny_classifier(), image()
    result = occlusion_sweep(model, x, patch=4, stride=4, fill="blur", target=1, progress=False)
    blurred = gaussian_blur(x, 1.0)
    y0, y1, x0, x1 = result.box(1, 1)
    occluded = x.clone()
    occluded[:, y0:y1, x0:x1] = blurred[:, y0:y1, x0:x1]
    with torch.no_grad():
        p = torch.softmax(model(occluded[None]), dim=1)[0, 1]
    assert float(result.probability[1, 1]) == pytest.approx(float(p), abs=1e-12)


def test_naive_is_registered():
    assert "naive" in occlusion_engines()


def test_occlude_command_writes_figure_and_json(tmp_path):
    import argparse
    import json

    from deconv.cli import occlude_command

    parser = argparse.ArgumentParser()
    occlude_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["occlude", "--model", "zfnet", "--image", "sample:coffee",
                              "--layer", "5", "--patch", "112", "--stride", "112",
                              "--out", str(tmp_path)])
    assert args.func(args) == 0
    record = json.loads((tmp_path / "occlusion_coffee.json").read_text())
    assert record["grid"] == [2, 2] and len(record["probability"]) == 2
    assert record["feature_layer"] and (tmp_path / "occlusion_coffee.png").stat().st_size > 1000


def test_old_feature_pair_still_works_with_a_deprecation_warning():
    model, x = tiny_classifier(), image()
    new = occlusion_sweep(model, x, patch=4, stride=4, layer="3", channel=1, progress=False)
    with pytest.warns(DeprecationWarning, match="layer=... and channel="):
        old = occlusion_sweep(model, x, patch=4, stride=4, feature=("3", 1), progress=False)
    assert torch.equal(old.feature_total, new.feature_total)
    with pytest.raises(TypeError, match="not both"), pytest.warns(DeprecationWarning):
        occlusion_sweep(model, x, patch=4, stride=4, layer="3", feature=("3", 1),
                        progress=False)
