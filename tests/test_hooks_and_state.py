"""No hook, mode or state change survives a deconvnet call, normal or failing (the check is
the shared ``model_guard`` of tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deconv.deconvnet import Deconvnet, GenericDeconvnet


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
                          nn.MaxPool2d(3, 2), nn.Dropout(0.5), nn.Conv2d(4, 5, 3),
                          nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(5 * 3 * 3, 3))
    with torch.no_grad():  # non-trivial running statistics
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    model.train()  # the worst case: a model left in training mode
    model[0].weight.requires_grad_(False)  # a mixed requires_grad state must survive too
    return model


def _calls(engine_cls):
    images = torch.randn(2, 3, 12, 12)
    units = torch.tensor([[0, 1, 1, 1], [1, 2, 0, 2]])
    fc_units = torch.tensor([[0, 1], [1, 2]])
    return [
        lambda e: e.project(images, "6", units),
        lambda e: e.project(images, "8", fc_units, seed="unit", chunk_size=1),
        lambda e: e.project_feature_map(images, "2", 1),
        lambda e: e.top_units(images, "6", 4),
    ], [
        lambda e: e.project(torch.randn(2, 5, 12, 12), "6", units),  # fails inside forward
        lambda e: e.project(images, "6", torch.tensor([[0, 9, 0, 0]])),  # bad unit
        lambda e: e.project(torch.randn(2, 3, 4, 4), "6", units),  # input too small
    ]


@pytest.mark.parametrize("engine", ["explicit", "deconvnet", "guided", "gradient"])
def test_no_hooks_and_no_state_change_after_normal_and_failing_calls(engine, model_guard):
    model = _model()
    probe = torch.randn(2, 3, 12, 12)
    model.eval()
    reference_output = model(probe).detach()
    model.train()
    guard = model_guard(model, at_teardown=False)  # the test itself sets eval mode at the end
    make = (lambda: Deconvnet(model)) if engine == "explicit" else \
        (lambda: GenericDeconvnet(model, rule=engine))
    good, bad = _calls(engine)
    for call in good:
        call(make())
        guard.check()
    for call in bad:
        with pytest.raises((ValueError, RuntimeError)):
            call(make())
        guard.check()
    model.eval()
    assert torch.equal(model(probe), reference_output)


def test_engines_use_inference_semantics_on_a_model_in_training_mode():
    model = _model()
    images = torch.randn(2, 3, 12, 12)
    units = torch.tensor([[0, 1, 1, 1], [1, 2, 0, 2]])
    a = Deconvnet(model).project(images, "6", units)
    b = Deconvnet(model).project(images, "6", units)
    assert torch.equal(a, b)  # dropout off
    model.eval()
    c = Deconvnet(model).project(images, "6", units)
    assert torch.equal(a, c)
    model.train()
    # The generic engine goes through batch norm by its gradient unless the rule is the
    # paper's (identity); both are deterministic under inference semantics.
    g1 = GenericDeconvnet(model, rule="guided").project(images, "6", units)
    g2 = GenericDeconvnet(model, rule="guided").project(images, "6", units)
    assert torch.equal(g1, g2)
    generic = GenericDeconvnet(model, windowed=False)
    torch.testing.assert_close(generic.project(images, "6", units), a, rtol=1e-5, atol=1e-7)


def test_inplace_relu_does_not_corrupt_a_pre_activation_layer():
    # Layer "0" is the conv output; the inplace ReLU after it must not rectify what we record.
    model = _model().eval()
    images = torch.randn(2, 3, 12, 12)
    conv_out = model[0](images)
    for engine in (Deconvnet(model), GenericDeconvnet(model)):
        act = engine.activations(images, "0")
        torch.testing.assert_close(act, conv_out.detach())
        assert (act < 0).any()
