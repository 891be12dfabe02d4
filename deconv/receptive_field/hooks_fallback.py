"""Fallback for models whose own ``forward`` torch.fx cannot trace: forward hooks on leaf modules.

Every leaf module (and the target layer) gets a forward hook; fields are linked from module to
module by the identity of the tensors they produce. A module input that no module produced
(e.g. the result of a functional ``x + y``) is **assumed** to be the output of the module that
ran just before it (reshaped by its shape), so merges done with functions are invisible here;
:func:`deconv.receptive_field.receptive_field` warns when it falls back to this.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deconv.receptive_field.field import ReceptiveFieldError, _Context, _Field, _image_field
from deconv.receptive_field.graph_walk import _example_input, _propagate_submodule
from deconv.receptive_field.layout_rules import _reshape_field
from deconv.receptive_field.op_call import _first_output
from deconv.receptive_field.rule_table import _apply, _is_rule_leaf


def _propagate_hooks(module: nn.Module, name: str, ctx: _Context) -> tuple[_Field, Any]:
    """Field and output of layer ``name`` from one hooked forward pass (its last call)."""
    target = module.get_submodule(name)
    produced: dict[int, _Field] = {}
    keep: list[Any] = []  # keeps tensors alive so that their ids stay unique
    last: list[tuple[_Field, tuple[int, ...]]] = []  # (field, shape) of the latest module output
    found: list[tuple[_Field, Any]] = []

    def field_of(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            if id(v) in produced:
                return produced[id(v)]
            if not last:
                return None
            field, shape = last[-1]  # the assumption: it comes from the latest module output
            return _reshape_field(field, shape, tuple(v.shape))
        if isinstance(v, (tuple, list)):
            return type(v)(field_of(x) for x in v)
        return v

    busy: list[nn.Module] = []  # make_fx runs a module again: ignore the hooks it fires

    def hook(sub: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
        if busy:
            return
        if sub is target and not _is_rule_leaf(sub) and list(sub.children()):
            field = field_of(_first_output(out))
        else:
            fargs = tuple(field_of(a) for a in args)
            fkwargs = {k: field_of(v) for k, v in kwargs.items()}
            if _is_rule_leaf(sub):
                field = _apply("call_module", None, sub, args, kwargs, fargs, fkwargs, out, ctx)
            else:  # a custom layer without submodules
                busy.append(sub)
                try:
                    field = _propagate_submodule(sub, args, kwargs, fargs, fkwargs, ctx)
                finally:
                    busy.pop()
        if isinstance(field, _Field):
            for o in (out if isinstance(out, (tuple, list)) else (out,)):
                if isinstance(o, torch.Tensor):
                    produced[id(o)] = field
                    keep.append(o)
                    last.append((field, tuple(o.shape)))
            if sub is target:
                found.append((field, out))

    image = _example_input(module, ctx.image)
    produced[id(image)] = _image_field(ctx.image)
    keep.append(image)
    handles = []
    try:
        for sub in module.modules():
            if sub is target or not list(sub.children()):
                handles.append(sub.register_forward_hook(hook, with_kwargs=True))
        with torch.no_grad():
            module(image)
    finally:
        for handle in handles:
            handle.remove()
    if not found:
        raise ReceptiveFieldError(f"layer {name!r} did not run in the model's forward pass")
    return found[-1]
