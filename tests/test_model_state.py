"""The one "eval, then restore" context manager and the stop-the-forward exception."""

import warnings

import pytest
import torch
from torch import nn

from deconv.model_state import StopForward, eval_mode, registered_hooks


def _net() -> nn.Sequential:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(inplace=True),
                        nn.Dropout(0.5))
    net.train()
    net[1].eval()  # a mixed model: each module's own flag must come back
    net[0].weight.requires_grad_(False)
    return net


def _flags(net: nn.Module) -> tuple:
    return ([m.training for m in net.modules()], [p.requires_grad for p in net.parameters()],
            [getattr(m, "inplace", None) for m in net.modules()])


@pytest.mark.parametrize("raises", [False, True])
def test_eval_mode_sets_and_restores_every_flag(raises):
    net = _net()
    before = _flags(net)
    try:
        with eval_mode(net, inplace=False, requires_grad=False) as inside:
            assert inside is net
            assert not any(m.training for m in net.modules())
            assert not net[2].inplace and not net[3].inplace
            assert not any(p.requires_grad for p in net.parameters())
            if raises:
                raise RuntimeError("boom")
    except RuntimeError:
        assert raises
    assert _flags(net) == before


def test_eval_mode_leaves_inplace_and_grad_alone_by_default():
    net = _net()
    with eval_mode(net):
        assert net[2].inplace and net[1].weight.requires_grad
    assert net.training and not net[1].training


def test_stop_forward_is_not_swallowed_by_except_exception():
    assert not issubclass(StopForward, Exception)

    class Careful(nn.Module):
        def forward(self, x):
            try:
                return torch.relu(x)
            except Exception:  # model code that falls back on any error
                return x

    net = Careful()
    net.register_forward_hook(lambda *_: (_ for _ in ()).throw(StopForward()))
    with pytest.raises(StopForward):
        net(torch.ones(1))


def test_old_names_still_work_with_a_deprecation_warning():
    import deconv.methods
    import deconv.optimization
    from deconv.deconvnet import generic

    net = _net()
    for module, name in [(deconv.methods, "inference_state"),
                         (deconv.optimization, "preserved_model_state"),
                         (generic, "model_in_eval_mode")]:
        with pytest.warns(DeprecationWarning, match=f"{name} is deprecated"):
            old = getattr(module, name)
        with old(net):
            assert not net.training
        assert net.training
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert eval_mode is deconv.model_state.eval_mode


def test_registered_hooks_removes_the_ones_registered_before_a_failure():
    net = nn.Sequential(nn.ReLU(), nn.ReLU())

    def register():
        yield net[0].register_forward_hook(lambda *_: None)
        raise ValueError("second registration fails")

    with pytest.raises(ValueError):
        with registered_hooks(register()):
            pass
    assert not net[0]._forward_hooks
    with registered_hooks(m.register_forward_hook(lambda *_: None) for m in net) as handles:
        assert len(handles) == 2 and all(m._forward_hooks for m in net)
    assert not handles and not any(m._forward_hooks for m in net)
