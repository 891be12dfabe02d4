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
