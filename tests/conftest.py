"""Shared test helpers: the one "the call left the model exactly as it was" check.

Every toolkit call promises to leave no hook behind and not to change the model (parameters,
buffers, each module's train/eval flag and ``inplace`` flag, each parameter's ``requires_grad``
and ``.grad``), also when it raises. ``model_guard(model)`` snapshots all of that; ``check()``
compares (and the fixture checks every guarded model again when the test ends), so each test
states the promise in one line instead of re-implementing it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.modules.module as module_module
from torch import nn

#: Per-module hook dictionaries of ``nn.Module`` (all kinds: forward, pre, backward, kwargs).
HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
              "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs",
              "_forward_hooks_always_called", "_state_dict_hooks", "_load_state_dict_pre_hooks")
#: Hooks registered for every module at once (``register_module_forward_hook`` & co.).
GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                "_global_backward_pre_hooks")


def _hooks(model: nn.Module) -> dict[str, tuple]:
    found = {f"{name or '<root>'}.{attr}": tuple(getattr(m, attr, {}).keys())
             for name, m in model.named_modules() for attr in HOOK_DICTS}
    found.update({attr: tuple(getattr(module_module, attr, {}).keys()) for attr in GLOBAL_HOOKS})
    return {key: value for key, value in found.items() if value}


def _snapshot(model: nn.Module) -> dict:
    return {
        "hooks": _hooks(model),
        "tensor hooks": [(tuple((p._backward_hooks or {}).keys()),
                          tuple((getattr(p, "_post_accumulate_grad_hooks", None) or {}).keys()))
                         for p in model.parameters()],
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "dtypes": {k: (v.dtype, v.device) for k, v in model.state_dict().items()},
        "parameters": [id(p) for p in model.parameters()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [id(p.grad) if p.grad is not None else None for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "inplace": [getattr(m, "inplace", None) for m in model.modules()],
        "modules": [type(m) for m in model.modules()],
        "function modes": torch._C._len_torch_function_stack(),
        # values too: an in-place add into an existing .grad keeps its id
        "grad values": [None if p.grad is None else p.grad.detach().clone()
                        for p in model.parameters()],
    }


class ModelGuard:
    """A snapshot of a model; :meth:`check` asserts the model still matches it.

    Args:
        model (nn.Module | LoadedModel): the model to watch (a LoadedModel's ``model``).
    """

    def __init__(self, model):
        self.model = model.model if not isinstance(model, nn.Module) else model
        self.before = _snapshot(self.model)

    def check(self, when: str = "") -> None:
        """Assert: no hook added or left, no tensor, flag or gradient of the model changed."""
        after = _snapshot(self.model)
        where = f" ({when})" if when else ""
        assert after["hooks"] == self.before["hooks"], f"hooks left{where}: {after['hooks']}"
        assert after["function modes"] == self.before["function modes"], \
            f"a TorchFunctionMode is still active{where}"
        assert after["state"].keys() == self.before["state"].keys(), f"state keys changed{where}"
        for key, value in self.before["state"].items():
            assert torch.equal(after["state"][key], value), f"{key} changed{where}"
        for key in ("dtypes", "tensor hooks", "parameters", "requires_grad", "grads", "training",
                    "inplace", "modules"):
            assert after[key] == self.before[key], f"{key} changed{where}"
        for i, (now, then) in enumerate(zip(after["grad values"], self.before["grad values"])):
            assert (now is None) == (then is None) and (now is None or torch.equal(now, then)), \
                f"the gradient of parameter {i} changed{where}"


@pytest.fixture
def model_guard():
    """``guard = model_guard(model)``; ``guard.check()`` any time; checked again at teardown
    (unless ``at_teardown=False``: for a snapshot taken while the test holds a hook itself)."""
    guards: list[ModelGuard] = []

    def make(model, at_teardown: bool = True) -> ModelGuard:
        guard = ModelGuard(model)
        if at_teardown:
            guards.append(guard)
        return guard

    yield make
    for guard in guards:
        guard.check("at the end of the test")
