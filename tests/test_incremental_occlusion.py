"""Incremental occlusion (Krypton) gives the same outputs as running the model on occluded images.

The reference is :func:`naive_occlusion_outputs` (a batched forward of the occluded images),
itself checked against a one-image-at-a-time loop; everything runs in float64 on small nets.
"""

from __future__ import annotations

import math
import random
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deconv.occlusion.fills import occlude_images
from deconv.occlusion.incremental import IncrementalOcclusion, supports
from deconv.occlusion.incremental_plan import SpatialGeometry, affected_range
from deconv.occlusion.naive import naive_occlusion_outputs

TOL64 = 1e-10


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)


def _boxes(h: int, w: int, sizes: tuple[int, ...], stride: int) -> torch.Tensor:
    """Squares of each size at every stride step, plus ones hanging over each border."""
    rows = []
    for s in sizes:
        for y in range(-s // 2, h, stride):
            for x in range(-s // 2, w, stride):
                rows.append((y, y + s, x, x + s))
        rows += [(0, s, 0, s), (h - s, h, w - s, w), (0, h, 0, w), (h - 1, h, w - 1, w)]
    return torch.tensor(rows)


def _random_net(seed: int, in_size: int) -> nn.Sequential:
    """A random chain of convs/pools/pointwise layers (odd kernels, strides, dilation, ceil,
    grouped and depthwise convolutions)."""
    rng = random.Random(seed)
    layers: list[nn.Module] = []
    channels, size = 3, in_size
    for _ in range(rng.randint(3, 6)):
        choice = rng.choice(["conv", "conv", "max", "avg", "point"])
        if choice == "conv" or size < 4:
            k, s, d = rng.choice([1, 2, 3, 5]), rng.choice([1, 1, 2, 3]), rng.choice([1, 1, 2])
            p = rng.randint(0, (k * d) // 2)
            if (size + 2 * p - d * (k - 1) - 1) // s + 1 < 2:
                k, s, d, p = 3, 1, 1, 1
            out = rng.choice([2, 4, 5])
            grouped = [g for g in (2, channels) if channels % g == 0 == out % g]  # depthwise: c
            groups = rng.choice(grouped) if grouped and rng.random() < 0.75 else 1
            layers.append(nn.Conv2d(channels, out, k, s, p, d, groups=groups))
            channels = out
        elif choice == "max":
            k = rng.choice([2, 3])
            layers.append(nn.MaxPool2d(k, rng.choice([1, 2]), rng.randint(0, k // 2),
                                       dilation=rng.choice([1, 2]) if k == 2 else 1,
                                       ceil_mode=rng.random() < 0.5))
        elif choice == "avg":
            k = rng.choice([2, 3])
            layers.append(nn.AvgPool2d(k, rng.choice([1, 2]), rng.randint(0, k // 2),
                                       ceil_mode=rng.random() < 0.5,
                                       count_include_pad=rng.random() < 0.5))
        else:
            layers.append(rng.choice([nn.ReLU(inplace=True), nn.Tanh(),
                                      nn.BatchNorm2d(channels), nn.LocalResponseNorm(3),
                                      nn.Dropout(0.3)]))
        with torch.no_grad():
            size = nn.Sequential(*layers)(torch.zeros(1, 3, in_size, in_size)).shape[-1]
    net = nn.Sequential(*layers)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return net.double().eval()


class _Head(nn.Module):
    """A conv stack, an adaptive pool (identity or not), torch.flatten and a linear head."""

    def __init__(self, pool: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 5, 2, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.LocalResponseNorm(5, alpha=1e-2, k=2.0), nn.Conv2d(6, 8, 3, 1, 1, dilation=1),
            nn.BatchNorm2d(8), nn.ReLU(inplace=True))
        self.avgpool = nn.AdaptiveAvgPool2d(pool)
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(8 * pool * pool, 16),
                                        nn.ReLU(inplace=True), nn.Linear(16, 7))

    def forward(self, x):
        x = F.relu(self.features(x))
        return self.classifier(torch.flatten(self.avgpool(x), 1))


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = torch.relu(self.conv1(x))
        y = y + self.conv2(y)
        return self.fc(y.mean((2, 3)))


def _check(model, image, fill, boxes, *, layer=None, reduce="sum", batch_size=7, bands=True,
           low_memory=False):
    engine = IncrementalOcclusion(model, image, fill, layer=layer, reduce=reduce,
                                  batch_size=batch_size, bands=bands, low_memory=low_memory)
    engine._split_bytes = 64  # low-memory mode: every conv runs in slices of output channels
    assert engine.incremental, engine.reason
    got = engine.outputs(boxes)
    want = naive_occlusion_outputs(model, image, fill, boxes, layer=layer, reduce=reduce,
                                   batch_size=5)
    assert got.output.shape == want.output.shape
    torch.testing.assert_close(got.output, want.output, rtol=0, atol=TOL64)
    if layer is not None:
        assert got.captured.shape == want.captured.shape
        scale = max(1.0, float(want.captured.abs().max()))
        torch.testing.assert_close(got.captured, want.captured, rtol=0, atol=TOL64 * scale)
    return engine, got


def test_naive_reference_equals_one_image_at_a_time():
    _seed(0)
    model = _Head(2).double().eval()
    image = torch.randn(3, 23, 19, dtype=torch.float64)
    boxes = torch.tensor([(0, 5, 0, 5), (10, 23, 3, 4), (-2, 3, 17, 30)])
    fill = torch.randn(3, dtype=torch.float64)
    naive = naive_occlusion_outputs(model, image, fill, boxes, batch_size=2).output
    for i, (y0, y1, x0, x1) in enumerate(boxes.tolist()):
        x = image.clone()
        x[:, max(y0, 0):y1, max(x0, 0):x1] = fill.view(3, 1, 1)
        torch.testing.assert_close(naive[i], model(x[None])[0], rtol=0, atol=1e-14)


@pytest.mark.parametrize("mode", ["bands", "whole", "low_memory"])
@pytest.mark.parametrize("seed", range(12))
def test_random_chains_match_naive(seed, mode, model_guard):
    _seed(seed)
    size = random.Random(seed).choice([16, 17, 23, 29, 31])
    model = _random_net(seed, size)
    image = torch.randn(3, size, size + 3, dtype=torch.float64)
    boxes = _boxes(size, size + 3, sizes=(1, 4, 9), stride=5)
    fill = torch.randn(3, dtype=torch.float64)
    guard = model_guard(model)
    _check(model, image, fill, boxes, layer=None, batch_size=random.Random(seed).choice(
        [1, 3, 16, 1000]), bands=mode != "whole", low_memory=mode == "low_memory")
    guard.check()


@pytest.mark.parametrize("pool", [7, 2])  # 7: identity at 30 px (stays spatial), 2: head
@pytest.mark.parametrize("batch_size", [1, 2, 5, 64])
def test_classifier_head_and_captures(pool, batch_size):
    _seed(1)
    model = _Head(pool).double().eval()
    image = torch.randn(3, 30, 30, dtype=torch.float64)
    fill = torch.randn(3, 30, 30, dtype=torch.float64)  # a per-pixel fill image
    boxes = _boxes(30, 30, sizes=(1, 7, 30), stride=6)
    for layer in ("features.3", "features.6", "features", "avgpool", "classifier.2"):
        engine, _ = _check(model, image, fill, boxes, layer=layer, batch_size=batch_size)
    engine, _ = _check(model, image, fill, boxes[:9], layer="features.5", reduce=None)
    torch.testing.assert_close(engine.reference.output, model(image[None]), rtol=0, atol=TOL64)


def test_whole_image_and_outside_boxes():
    _seed(2)
    model = _Head(2).double().eval()
    image = torch.randn(3, 21, 21, dtype=torch.float64)
    boxes = torch.tensor([(0, 21, 0, 21), (-5, 40, -5, 40), (30, 40, 0, 5), (0, 1, 0, 1)])
    _, got = _check(model, image, 0.0, boxes, batch_size=4)
    torch.testing.assert_close(got.output[2], model(image[None])[0], rtol=0, atol=TOL64)


def test_conv_stack_without_head_outputs_last_map():
    _seed(3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True),
                          nn.MaxPool2d(2, 2, ceil_mode=True), nn.Conv2d(4, 5, 3, padding=2,
                                                                          dilation=2)).double()
    image = torch.randn(3, 19, 17, dtype=torch.float64)
    _, got = _check(model.eval(), image, 0.5, _boxes(19, 17, (3,), 4), layer="1")
    assert got.output.shape[1:] == (5, 10, 9)


def test_float32_zfnet_probabilities():
    from deconv import load_model

    loaded = load_model("zfnet", config="fashion")
    model = loaded.model.eval()
    _seed(4)
    image = torch.randn(3, 64, 64)
    boxes = _boxes(64, 64, sizes=(12,), stride=13)
    engine = IncrementalOcclusion(loaded, image, 0.0, layer="features.9", batch_size=16)
    got = engine.outputs(boxes)
    want = naive_occlusion_outputs(model, image, 0.0, boxes, layer="features.9")
    assert (got.output.softmax(1) - want.output.softmax(1)).abs().max() < 1e-5
    torch.testing.assert_close(got.captured, want.captured, rtol=1e-4, atol=1e-3)


def test_affected_range_matches_brute_force():
    g = SpatialGeometry(kernel=3, stride=2, pad=1, dilation=2)
    n_in, n_out = 17, 9
    for r0 in range(n_in):
        for r1 in range(r0 + 1, n_in + 1):
            o0, o1 = affected_range(torch.tensor([r0]), torch.tensor([r1]), g, n_out)
            hit = [o for o in range(n_out)
                   if any(r0 <= o * g.stride - g.pad + j * g.dilation < r1 for j in range(3))]
            if not hit:  # the range falls between dilated taps
                continue
            assert hit[0] >= o0 and hit[-1] < o1  # a contiguous superset of the touched outputs
            assert o1 - o0 <= hit[-1] - hit[0] + 1 + 2  # and not much more (dilation holes)


def test_fallback_for_residual_model_warns_and_matches():
    _seed(5)
    model = _Residual().double().eval()
    ok, reason = supports(model)
    assert not ok and "add" in reason
    image = torch.randn(3, 16, 16, dtype=torch.float64)
    boxes = _boxes(16, 16, (5,), 6)
    with pytest.warns(UserWarning, match="add"):
        engine = IncrementalOcclusion(model, image, 0.0, layer="conv2")
    assert not engine.incremental
    got = engine.outputs(boxes)
    for i in range(len(boxes)):
        occluded = occlude_images(image, torch.zeros_like(image), boxes[i:i + 1])
        torch.testing.assert_close(got.output[i], model(occluded)[0], rtol=0, atol=TOL64)


def test_training_mode_and_unknown_layer_are_unsupported():
    model = _Head(2).double()
    assert not supports(model.train())[0]
    model.eval()
    odd = nn.Sequential(nn.Conv2d(3, 3, 3), nn.Upsample(scale_factor=2)).eval()
    ok, reason = supports(odd)
    assert not ok and "Upsample" in reason


def test_no_hooks_left_and_model_unchanged(model_guard):
    model = _Head(2).double().eval()
    image = torch.randn(3, 20, 20, dtype=torch.float64)
    boxes = _boxes(20, 20, (4,), 8)
    guard = model_guard(model)
    engine = IncrementalOcclusion(model, image, 0.0, layer="features.5")
    engine.outputs(boxes)
    naive_occlusion_outputs(model, image, 0.0, torch.tensor([[0, 4, 0, 4]]), layer="features.5")
    guard.check("after normal calls")
    assert not model.training
    for m in model.modules():
        if hasattr(m, "inplace"):
            assert m.inplace is True or not isinstance(m, nn.ReLU)
    # Failing calls: bad arguments, and forwards that fail halfway: pre-hooks of the test raise
    # in the second conv (the engine's reference forward and the naive one call it; the
    # incremental update runs F.conv2d on windows) and in the head's first Linear (after the
    # engine has updated its cached layers).
    with pytest.raises(ValueError):
        engine.outputs(torch.tensor([[0, 4, 0]]))
    with pytest.raises(ValueError):
        IncrementalOcclusion(model, image, 0.0, layer="nope")
    guard.check("after bad arguments")

    def trip(module, args):
        raise RuntimeError("tripwire")

    wires = [model.features[4].register_forward_pre_hook(trip),
             model.classifier[1].register_forward_pre_hook(trip)]
    try:
        tripped = model_guard(model, at_teardown=False)  # the tripwires are the only hooks
        with pytest.raises(RuntimeError, match="tripwire"):
            IncrementalOcclusion(model, image, 0.0, layer="features.5")  # reference forward
        with pytest.raises(RuntimeError, match="tripwire"):
            engine.outputs(boxes)  # after the incremental update of the cached layers
        with pytest.raises(RuntimeError, match="tripwire"):
            naive_occlusion_outputs(model, image, 0.0, boxes, layer="features.5")
        tripped.check("after forwards that failed halfway")
    finally:
        for wire in wires:
            wire.remove()
    guard.check("after failing calls")


def test_approximate_mode_is_exact_at_full_fraction_and_close_below():
    _seed(6)
    model = _Head(2).double().eval()
    image = torch.randn(3, 40, 40, dtype=torch.float64)
    boxes = _boxes(40, 40, (8,), 8)
    exact = IncrementalOcclusion(model, image, 0.0).outputs(boxes).output
    full = IncrementalOcclusion(model, image, 0.0, max_fraction=1.0).outputs(boxes).output
    torch.testing.assert_close(full, exact, rtol=0, atol=TOL64)
    approx = IncrementalOcclusion(model, image, 0.0, max_fraction=0.3).outputs(boxes).output
    assert torch.isfinite(approx).all()
    assert not torch.allclose(approx, exact)  # the cap did cut the projective field
    assert math.isclose(float(torch.corrcoef(torch.stack([approx.flatten(),
                                                          exact.flatten()]))[0, 1]), 1.0,
                        abs_tol=0.2)


def test_registered_as_sweep_engine():
    from deconv.occlusion import engines

    assert "incremental" in engines.occlusion_engines()  # an explicit registry entry
    _seed(7)
    model = _Head(2).double().eval()
    image = torch.randn(3, 24, 24, dtype=torch.float64)
    fill = torch.zeros_like(image)
    boxes = torch.tensor([(y, y + 6, x, x + 6) for y in range(0, 19, 3) for x in range(0, 19, 3)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast = engines.evaluate_occluded(model, image, fill, boxes, layer="features.4",
                                         engine="incremental")
    slow = engines.evaluate_occluded(model, image, fill, boxes, layer="features.4",
                                     engine="naive")
    torch.testing.assert_close(fast.output, slow.output, rtol=0, atol=TOL64)
    torch.testing.assert_close(fast.layer_totals, slow.layer_totals, rtol=0, atol=1e-9)


def test_drill_down_exact_at_coarse_one_and_refines_the_most_sensitive():
    from deconv.occlusion.approximate import drill_down_map

    _seed(8)
    model = _Head(2).double().eval()
    image = torch.randn(3, 24, 24, dtype=torch.float64)
    boxes = torch.tensor([(y, y + 6, x, x + 6) for y in range(0, 19, 3) for x in range(0, 19, 3)])
    engine = IncrementalOcclusion(model, image, 0.0)

    def score(out):
        return out.output.softmax(1)[:, 0]

    exact = score(engine.outputs(boxes)).view(7, 7)
    full = drill_down_map(engine, boxes, (7, 7), score, coarse=1, refine=0)
    torch.testing.assert_close(full.grid, exact, rtol=0, atol=TOL64)
    assert full.evaluated.all()
    approx = drill_down_map(engine, boxes, (7, 7), score, coarse=3, refine=0.3)
    assert 0 < approx.evaluated_fraction < 1
    ev = approx.evaluated
    torch.testing.assert_close(approx.grid[ev], exact[ev], rtol=0, atol=TOL64)
    assert ev[::3, ::3].all() and ev[-1, -1]  # the coarse grid includes the last row/column
    with pytest.raises(ValueError, match="coarse"):
        drill_down_map(engine, boxes, (7, 7), score, coarse=0)
    with pytest.raises(ValueError, match="grid"):
        drill_down_map(engine, boxes, (6, 7), score)


def test_row_bands_hold_few_rows_and_survive_any_order():
    """Bands keep a fraction of the early layers' rows; out-of-order calls recompute, exactly."""
    _seed(3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                          nn.MaxPool2d(2), nn.Conv2d(4, 5, 3, padding=2, dilation=2), nn.ReLU(),
                          nn.AvgPool2d(3, 2, 1), nn.Conv2d(5, 6, 3)).double().eval()
    image = torch.randn(3, 64, 61, dtype=torch.float64)
    boxes = _boxes(64, 61, sizes=(6,), stride=4)[:-4]  # the grid (no whole-image box)
    engine = IncrementalOcclusion(model, image, 0.0, batch_size=8)
    full = IncrementalOcclusion(model, image, 0.0, batch_size=8, bands=False)
    assert [c.banded for c in engine._spatial.values()] == [True] * 5 + [False]
    want = naive_occlusion_outputs(model, image, 0.0, boxes).output
    held = []
    step = engine._update_bands

    def spy(windows):
        step(windows)
        held.append(max(c.rows / f.rows for c, f in zip(engine._spatial.values(),
                                                         full._spatial.values()) if c.banded))

    engine._update_bands = spy
    torch.testing.assert_close(engine.outputs(boxes).output, want, rtol=0, atol=TOL64)
    assert max(held) < 0.5, held
    extra = _boxes(64, 61, sizes=(6,), stride=4)[-4:]
    for part in (boxes[-40:], boxes[:40], boxes[200:240], extra, boxes[100:140]):  # any order
        got = engine.outputs(part).output
        torch.testing.assert_close(got, naive_occlusion_outputs(model, image, 0.0, part).output,
                                   rtol=0, atol=TOL64)


def test_band_update_keeps_what_it_can_and_source_rows_match_the_kernel():
    from deconv.occlusion.incremental_cache import SpatialCache, band_update, source_rows

    band = SpatialCache(torch.zeros(6 * 4, 2), 4, 1, 1, (10, 2), (10, 2), None, banded=True, lo=3)
    assert (band.lo, band.hi) == (3, 9)
    assert band_update(band, 5, 12) == (5, 9, 12)  # keep rows 5..8, compute 9..11
    assert band_update(band, 4, 7) == (4, 9, 9)  # already held: nothing to compute
    assert band_update(band, 1, 7) == (9, 1, 7)  # starts above the band: recompute all
    assert band_update(band, 10, 12) == (9, 10, 12)  # past the end: recompute all
    empty = SpatialCache(torch.zeros(0, 2), 4, 1, 1, (10, 2), (10, 2), None, banded=True)
    assert band_update(empty, 0, 3) == (0, 0, 3)
    # Padded rows [a, b) of a stage with pad_top 1 over an input of 10 rows; the previous
    # stage (kernel 3, stride 2, dilation 2: span 5) computes input row v from its padded
    # rows [2v, 2v + 5).
    geometry = SpatialGeometry(kernel=3, stride=2, pad=0, dilation=2)
    for a in range(0, 13):
        for b in range(a + 1, 13):
            rows = [p - 1 for p in range(a, b) if 0 <= p - 1 < 10]
            want = (2 * min(rows), 2 * max(rows) + 5) if rows else (0, 0)
            assert source_rows(a, b, band, geometry) == want


@pytest.mark.parametrize("pool", [7, 2])
def test_compute_dtype_runs_the_spatial_layers_in_lower_precision(pool, model_guard):
    """float32 inside a float64 model: float32-close results, float64 out, model untouched."""
    _seed(5)
    model = _Head(pool).double().eval()
    image = torch.randn(3, 30, 30, dtype=torch.float64)
    boxes = _boxes(30, 30, sizes=(5,), stride=4)
    guard = model_guard(model, at_teardown=False)  # the test turns the model to float32 below
    engine = IncrementalOcclusion(model, image, 0.0, layer="features.4", batch_size=6,
                                  compute_dtype=torch.float32)
    got = engine.outputs(boxes)
    want = naive_occlusion_outputs(model, image, 0.0, boxes, layer="features.4")
    assert got.output.dtype == torch.float64 and got.captured.dtype == torch.float64
    torch.testing.assert_close(got.output, want.output, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.captured, want.captured, rtol=1e-4, atol=1e-4)
    assert (got.output - want.output).abs().max() > 0  # it did run in float32
    guard.check()  # values and dtypes
    bf16 = IncrementalOcclusion(model.float(), image.float(), 0.0, batch_size=6,
                                compute_dtype=torch.bfloat16).outputs(boxes).output
    want32 = naive_occlusion_outputs(model, image.float(), 0.0, boxes).output
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, want32, rtol=0.05, atol=0.05)


def test_old_capture_keyword_still_works_with_a_deprecation_warning():
    model = _Head(2).double().eval()
    image = torch.randn(3, 20, 20, dtype=torch.float64)
    boxes = _boxes(20, 20, (5,), 5)
    new = IncrementalOcclusion(model, image, 0.0, layer="features.3").outputs(boxes)
    with pytest.warns(DeprecationWarning, match="pass layer="):
        engine = IncrementalOcclusion(model, image, 0.0, capture="features.3")
    assert engine.layer == "features.3"
    torch.testing.assert_close(engine.outputs(boxes).captured, new.captured, rtol=0, atol=0)
    with pytest.warns(DeprecationWarning, match="pass layer="):
        old = naive_occlusion_outputs(model, image, 0.0, boxes, capture="features.3")
    torch.testing.assert_close(old.captured, new.captured, rtol=0, atol=TOL64)
