"""No hook left and the model unchanged after every call of the toolkit, normal or failing.

One table (captum's ``tests/attr/test_hook_removal.py`` is the model): every registered
attribution method, every occlusion engine, the incremental engine itself, mining, the
deconvnets with each rule, activation capture, receptive fields, probes, feature
visualization and the atlas. Each entry runs on a small network in eval and in train mode, once
normally and once with a *tripwire*: a forward pre-hook on a middle convolution that raises, so
the forward fails halfway, after the toolkit's own hooks have fired on the layers before it.
After each call the shared ``model_guard`` (tests/conftest.py) checks hooks, tensors and flags.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from functools import partial

import pytest
import torch
from torch import nn

from deconv.activations import dead_feature_maps, feature_maps
from deconv.atlas import build_atlas
from deconv.deconvnet import RULES, Deconvnet, GenericDeconvnet
from deconv.layers import capture_outputs
from deconv.methods import attribute, list_methods
from deconv.mining import LayerTaps, mine_top_k
from deconv.occlusion import IncrementalOcclusion, occlusion_methods, occlusion_sweep
from deconv.optimization import channel, visualize_feature
from deconv.probes import layer_features
from deconv.receptive_field import receptive_field

LAYER = "5"  # the ReLU after the grouped convolution "4"; the tripwire sits on "4"
SIZE = 12


class Tripwire(RuntimeError):
    """Raised in the middle of the forward pass by the test's own pre-hook."""


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1, groups=2), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))
    with torch.no_grad():  # non-trivial running statistics
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    model[0].weight.requires_grad_(False)  # a mixed requires_grad state must survive
    return model


def _images() -> torch.Tensor:
    return torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def _boxes() -> torch.Tensor:
    return torch.tensor([[0, 4, 0, 4], [4, 8, 6, 10], [8, 12, 8, 12]])


def _attribution(name: str) -> Callable:
    options = {"n_steps": 4} if "integrated" in name else \
        {"patch": 4, "stride": 4} if "occlusion" in name else {}
    return lambda model, x: attribute(name, model, x, [1, 3], **options)


def _units() -> torch.Tensor:
    return torch.tensor([[0, 1, 2, 2], [1, 4, 3, 1]])  # (image, channel, y, x) of layer "5"


def _sweep(model, x, engine: str):
    return occlusion_sweep(model, x[0], patch=4, stride=4, layer=LAYER, method=engine,
                           progress=False)


def _generic(model, x, rule: str):
    # windowed=False: the autograd path (on this chain the deconvnet rule would otherwise take
    # the explicit engine's way, checked above as Deconvnet.project)
    return GenericDeconvnet(model, rule=rule, windowed=False).project(x, LAYER, _units())


def _atlas(model, x):
    with tempfile.TemporaryDirectory() as out:
        build_atlas(model, x, [LAYER], out, k=2, optima=0, tile=8, batch_size=2, progress=False)


def _taps(model, x):
    seen = []
    with LayerTaps(model, ["2", LAYER], lambda name, out: seen.append(out.sum())) as taps:
        taps.run(x)


CALLS: dict[str, Callable[[nn.Module, torch.Tensor], object]] = {
    **{f"attribute {name}": _attribution(name) for name in list_methods()},
    **{f"occlusion_sweep method={engine}": partial(_sweep, engine=engine)
       for engine in occlusion_methods()},
    "IncrementalOcclusion": lambda model, x: IncrementalOcclusion(
        model, x[0], 0.0, layer=LAYER, batch_size=2).outputs(_boxes()),
    "mine_top_k": lambda model, x: mine_top_k(model, x, ["2", LAYER], k=2, batch_size=1,
                                              progress=False),
    "dead_feature_maps": lambda model, x: dead_feature_maps(model, x, [LAYER], progress=False),
    "Deconvnet.project": lambda model, x: Deconvnet(model).project(x, LAYER, _units()),
    "Deconvnet.top_units": lambda model, x: Deconvnet(model).top_units(x, LAYER, 2),
    "Deconvnet.project_feature_map": lambda model, x: Deconvnet(model).project_feature_map(
        x, LAYER, 1),
    **{f"GenericDeconvnet rule={rule}": partial(_generic, rule=rule) for rule in RULES},
    "GenericDeconvnet.attribute": lambda model, x: GenericDeconvnet(model).attribute(x, [0, 1]),
    "capture_outputs": lambda model, x: capture_outputs(model, x, ["2", LAYER]),
    "feature_maps": lambda model, x: feature_maps(model, x[0], LAYER),
    "LayerTaps": _taps,
    "layer_features": lambda model, x: layer_features(model, x, [LAYER]),
    "receptive_field": lambda model, x: receptive_field(model, LAYER, SIZE),
    "build_atlas": _atlas,
    "visualize_feature": lambda model, x: visualize_feature(
        model, channel(LAYER, 1), size=SIZE, steps=2, transforms=None, normalize=lambda t: t),
}

# Calls that never call the model's modules on real tensors cannot trip the wire: the explicit
# deconvnet runs its own functional forward (F.conv2d with the modules' weights), receptive
# fields run on fake tensors. They fail instead on a 1x1 image, which the max-pool "3" cannot
# take: the forward fails halfway, after the first three layers ran.
NO_MODULE_CALLS = {"Deconvnet.project", "Deconvnet.top_units", "Deconvnet.project_feature_map",
                   "receptive_field"}


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_no_hook_left_and_model_unchanged(name, train, model_guard):
    call = CALLS[name]
    model = _model().train(train)
    x = _images()
    guard = model_guard(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # train mode, fall-backs: warned about, not tested here
        call(model, x)
        guard.check("after a normal call")
        if name in NO_MODULE_CALLS:
            with pytest.raises((RuntimeError, ValueError)):
                call(model, x[:, :, :1, :1]) if name != "receptive_field" else \
                    receptive_field(model, LAYER, 1)
        else:
            wire = model[4].register_forward_pre_hook(_trip)
            tripped = model_guard(model, at_teardown=False)  # the tripwire is the only hook
            with pytest.raises(Tripwire):
                call(model, x)
            tripped.check("after a forward that failed halfway")
            wire.remove()
    guard.check("after the failing call")


def _trip(module, args):
    raise Tripwire("the forward fails here")


def test_the_table_covers_every_registered_method_and_engine():
    assert {f"attribute {n}" for n in list_methods()} <= set(CALLS)
    assert {f"occlusion_sweep method={e}" for e in occlusion_methods()} <= set(CALLS)
    assert {"incremental", "naive"} <= set(occlusion_methods())
