"""The figure helpers' one home (:mod:`deconv.plots`): one display scale, deprecated old paths."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest
import torch
from torch import nn

from deconv.deconvnet import Deconvnet, GenericDeconvnet, deconvnet_for
from deconv.plots import normalize_for_display, robust_peak, scale_for_display


def test_robust_peak_is_the_percentile_of_magnitudes_with_the_maximum_as_fallback():
    values = torch.linspace(-1000, 1000, 2001, dtype=torch.float64)[None]
    want = np.percentile(np.abs(values.numpy()), 99.5)  # numpy's linear interpolation
    assert float(robust_peak(values, 99.5)[0]) == pytest.approx(want, rel=1e-12)
    sparse = torch.zeros(2, 1000)
    sparse[0, 3] = -7.0  # the 99.5th percentile is 0: the maximum keeps the pixel visible
    assert robust_peak(sparse).tolist() == [7.0, 0.0]
    assert float(robust_peak(values, 100)[0]) == 1000


def test_both_presentations_use_the_same_scale():
    maps = torch.randn(4, 9, 9, generator=torch.Generator().manual_seed(0)) ** 3
    signed = scale_for_display(maps, 99.5)
    grey = normalize_for_display(maps[:, None], "image", percentile=99.5)[:, 0]
    torch.testing.assert_close(grey, 0.5 + 0.5 * signed)
    assert (scale_for_display(torch.zeros(2, 3, 3)) == 0).all()


def test_deconvnet_for_chooses_once_for_every_caller():
    chain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2))
    assert isinstance(deconvnet_for(chain, "1"), Deconvnet)
    assert isinstance(deconvnet_for(chain, "1", "generic"), GenericDeconvnet)
    guided = deconvnet_for(chain, "1", rule="guided")
    assert isinstance(guided, GenericDeconvnet)
    with pytest.raises(ValueError, match="deconvnet rule only"):
        deconvnet_for(chain, "1", "explicit", rule="guided")
    with pytest.raises(ValueError, match="engine must be one of"):
        deconvnet_for(chain, "1", "fast")


@pytest.mark.parametrize("old, new, name", [
    ("deconv.deconvnet.display", "deconv.plots.scaling", "normalize_for_display"),
    ("deconv.methods.display", "deconv.plots.scaling", "scale_for_display"),
    ("deconv.methods.figure", "deconv.plots.attributions", "method_grid"),
    ("deconv.optimization.figures", "deconv.plots.optima", "render_optima_sheet"),
    ("deconv.occlusion.figure", "deconv.plots.occlusion", "plot_occlusion_panels"),
    ("deconv.figures_topk", "deconv.plots.topk_grids", "top_k_panels"),
])
def test_old_module_paths_warn_and_re_export(old, new, name):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new.rsplit(".", 1)[0]):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)


def test_old_package_attributes_warn_and_re_export():
    import deconv.deconvnet
    import deconv.methods
    from deconv.plots import scaling

    with pytest.warns(DeprecationWarning, match="deconv.plots"):
        assert deconv.deconvnet.normalize_for_display is scaling.normalize_for_display
    with pytest.warns(DeprecationWarning, match="deconv.plots"):
        assert deconv.methods.scale_for_display is scaling.scale_for_display


def _tiny_loaded():
    from deconv.zoo.registry import LoadedModel

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    return LoadedModel(model=net, name="tiny", source="test", layers={1: "1"},
                       categories=list("abc"), input_size=16, mean=(0.5, 0.4, 0.3),
                       std=(0.2, 0.25, 0.3))


@pytest.mark.parametrize("fill, colour", [
    ("black", (0.0, 0.0, 0.0)),
    ("mean", (0.5, 0.4, 0.3)),  # the model's mean pixel
    (1.0, (0.7, 0.65, 0.6)),  # 1 in model-input units = mean + std
])
def test_occlusion_figure_draws_the_occluder_with_the_requested_fill(fill, colour):
    """Fig. 7 drew every non-mean fill grey; the figure now shows the fill the sweep used."""
    from deconv.plots.occlusion import occluded_picture, occlusion_panel

    loaded = _tiny_loaded()
    picture = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    panel = occlusion_panel(loaded, picture, patch=6, stride=5, fill=fill, layer="0",
                            progress=False)
    shown = occluded_picture(panel)
    y0, y1, x0, x1 = panel.result.boxes[int(panel.result.probability.argmin())].tolist()
    inside = shown[y0:y1, x0:x1].reshape(-1, 3)
    np.testing.assert_allclose(inside, np.broadcast_to(colour, inside.shape), atol=1e-6)
    outside = np.ones(shown.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(shown[outside], panel.picture[outside])
    assert panel.projection is not None and panel.result.feature_layer == "0"


def test_blur_fill_is_drawn_as_the_blurred_image():
    from deconv.occlusion import make_fill
    from deconv.plots.occlusion import occluded_picture, occlusion_panel

    loaded = _tiny_loaded()
    picture = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    panel = occlusion_panel(loaded, picture, patch=8, stride=8, fill="blur", progress=False)
    x = loaded.preprocess(picture)
    blurred = loaded.deprocess(make_fill("blur", x, patch=(8, 8))[0]).permute(1, 2, 0).numpy()
    y0, y1, x0, x1 = panel.result.boxes[int(panel.result.probability.argmin())].tolist()
    np.testing.assert_allclose(occluded_picture(panel)[y0:y1, x0:x1], blurred[y0:y1, x0:x1],
                               atol=1e-6)


def test_fig7_script_draws_black_for_fill_black(tmp_path, monkeypatch):
    """experiments/fig7_occlusion.py drew its occluder grey for any fill but "mean"."""
    import importlib.util
    from pathlib import Path

    import deconv
    from deconv.plots.occlusion import occluded_picture

    path = Path(__file__).resolve().parent.parent / "experiments" / "fig7_occlusion.py"
    spec = importlib.util.spec_from_file_location("fig7_occlusion", path)
    fig7 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fig7)
    monkeypatch.setattr(deconv, "load_model", lambda name: _tiny_loaded())
    drawn = []
    monkeypatch.setattr(fig7, "plot_occlusion_panels", lambda panels, *a, **k: drawn.extend(panels))
    fig7.main(["--out", str(tmp_path), "--quick", "--model", "tiny", "--feature-model", "tiny",
               "--layer", "1", "--patch", "6", "--stride", "5", "--fill", "black"])
    result = drawn[0].result
    y0, y1, x0, x1 = result.boxes[int(result.probability.argmin())].tolist()
    assert (occluded_picture(drawn[0])[y0:y1, x0:x1] == 0).all()
