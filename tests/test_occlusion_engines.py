"""The occlusion engine registry and the engine lifetime: built per sweep, nothing cached after."""

from __future__ import annotations

import argparse
import gc
import weakref

import pytest
import torch
from torch import nn

from deconv.occlusion import (
    GraphOcclusion,
    IncrementalOcclusion,
    NaiveOcclusion,
    OcclusionOutputs,
    build_engine,
    occlusion_engines,
    occlusion_sweep,
)
from deconv.occlusion import engines as registry


def _chain() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).double().eval()


def _image() -> torch.Tensor:
    return torch.randn(3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


BOXES = torch.tensor([[0, 4, 0, 4], [4, 8, 2, 6], [8, 12, 8, 12]])


@pytest.mark.parametrize("engine", [NaiveOcclusion, IncrementalOcclusion, GraphOcclusion])
def test_every_engine_has_one_interface_and_releases_its_caches(engine):
    model, image = _chain(), _image()
    want = NaiveOcclusion(model, image, 0.0, layer="1").outputs(BOXES)
    with engine(model, image, 0.0, layer="1", batch_size=2) as runner:
        got = runner.outputs(BOXES)
        assert engine.supports(model)[0]
    assert isinstance(got, OcclusionOutputs)
    torch.testing.assert_close(got.output, want.output, rtol=0, atol=1e-12)
    torch.testing.assert_close(got.captured, want.captured, rtol=0, atol=1e-10)
    assert runner.closed and not hasattr(runner, "image")  # caches dropped on leaving
    with pytest.raises(RuntimeError, match="closed"):
        runner.outputs(BOXES)
    only = engine(model, image, 0.0, layer="1", need_output=False, batch_size=2).outputs(BOXES)
    assert only.output is None and only.captured.shape == (3, 4)
    torch.testing.assert_close(only.captured, want.captured, rtol=0, atol=1e-10)


@pytest.mark.parametrize("engine", [IncrementalOcclusion, GraphOcclusion])
def test_bad_arguments(engine):
    """The shared checks of the exact engines (engine_base), each with its message."""
    model, image = _chain(), _image()
    with pytest.raises(ValueError, match="fill"):
        engine(model, image, torch.zeros(2))
    with pytest.raises(ValueError, match="unknown layer"):
        engine(model, image, 0.0, layer="nope")
    with pytest.raises(ValueError, match="max_fraction"):
        engine(model, image, 0.0, max_fraction=0)
    with pytest.raises(ValueError, match="boxes"):
        engine(model, image, 0.0).outputs(torch.zeros(3, 2))


def test_nothing_outlives_a_sweep():
    """No module-level engine cache: the image of a finished sweep can be garbage-collected."""
    import deconv.occlusion.incremental as incremental

    model, image = _chain(), _image()
    alive = weakref.ref(image)
    occlusion_sweep(model, image, patch=4, stride=4, engine="incremental", progress=False)
    assert not hasattr(incremental, "_LAST_ENGINE")
    del image
    gc.collect()
    assert alive() is None


def test_registry_names_auto_and_the_deprecated_method_argument():
    assert occlusion_engines()[:3] == ["naive", "incremental", "graph"]
    assert type(build_engine("auto", _chain(), _image(), 0.0)).__name__ == "IncrementalOcclusion"
    with pytest.raises(ValueError, match="unknown occlusion engine 'magic'"):
        occlusion_sweep(_chain(), _image(), patch=4, stride=4, engine="magic", progress=False)
    with pytest.warns(DeprecationWarning, match="engine="):
        old = occlusion_sweep(_chain(), _image(), patch=4, stride=4, method="naive",
                              progress=False)
    new = occlusion_sweep(_chain(), _image(), patch=4, stride=4, engine="naive", progress=False)
    assert old.engine == new.engine == "naive"
    torch.testing.assert_close(old.probability, new.probability, rtol=0, atol=0)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_occlusion_engine("naive", NaiveOcclusion)


def test_result_groups_its_parts_and_keeps_the_flat_names():
    result = occlusion_sweep(_chain(), _image(), patch=4, stride=4, layer="1", channel=2,
                             progress=False)
    assert result.grid.shape == result.grid_shape == (3, 3)
    assert result.classifier.probability is result.probability
    assert result.feature.total is result.feature_total and result.feature_channel == 2
    assert result.method == result.engine
    heads_only = occlusion_sweep(_chain(), _image(), patch=4, stride=4, progress=False)
    assert heads_only.feature is None and heads_only.feature_total is None


def test_occlude_command_engine_choices_come_from_the_registry():
    from deconv.cli import occlude_command

    parser = argparse.ArgumentParser()
    occlude_command.register(parser.add_subparsers(dest="command"))
    sub = parser._subparsers._group_actions[0].choices["occlude"]
    engine = next(a for a in sub._actions if a.dest == "engine")
    assert list(engine.choices) == ["auto", *occlusion_engines()]


def test_make_incremental_engine_takes_the_first_supporting_auto_engine():
    from deconv.occlusion.engines import make_incremental_engine

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return (self.conv(x) + x).flatten(1)

    chain = make_incremental_engine(_chain(), _image(), 0.0, bands=False, batch_size=4)
    graph = make_incremental_engine(Residual().double().eval(), _image(), 0.0, bands=False)
    assert type(chain) is IncrementalOcclusion and type(graph) is GraphOcclusion
    with pytest.warns(DeprecationWarning, match="deconv.occlusion.engines"):
        from deconv.occlusion.graph_engine import make_incremental_engine as old
    assert old is make_incremental_engine
