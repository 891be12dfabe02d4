"""The entry point :func:`receptive_field`: trace, propagate, and fall back when tracing fails.

Shapes come from one forward pass on fake tensors (no computation; an operation without a
fake-tensor kernel makes it run once for real, without gradients). The model is put in eval
mode for the duration and left as it was, train/eval flags included.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from deconv.errors import InvalidArgumentError
from deconv.layers import UnknownLayerError, module_of, resolve_layer
from deconv.model_state import eval_mode
from deconv.receptive_field.field import (
    ReceptiveField,
    ReceptiveFieldError,
    _Context,
    _Field,
    _to_receptive_field,
)
from deconv.receptive_field.graph_walk import (
    _NotInGraph,
    _propagate_root,
    _trace,
    _untraceable_modules,
)
from deconv.receptive_field.hooks_fallback import _propagate_hooks


def receptive_field(model, layer: str | int, input_size: int | tuple[int, int] = 224, *,
                    local: bool = False) -> ReceptiveField:
    """Exact receptive field of the units of ``layer`` (the module's output tensor).

    Args:
        model (nn.Module | LoadedModel): any CNN working on ``[N, C, H, W]`` images.
        layer (str | int): a ``named_modules()`` name or a paper layer number (see
            :func:`deconv.layers.resolve_layer`). If the module runs several times in one
            forward pass (a reused ReLU), its last call is used.
        input_size (int | tuple[int, int]): input side, or ``(h, w)``.
        local (bool): at a merge, ignore operands whose units all see the same field (e.g. the
            gate of a squeeze-and-excitation block, a global-context branch) and report the
            field of the remaining, local path. The exact answer (False) is the whole image for
            every layer after such a block.

    Returns:
        ReceptiveField: size, jump, start, input and output sizes; ``box(y, x)`` per unit.

    Raises:
        UnknownLayerError: no such layer. ReceptiveFieldError: the model contains an operation
        whose output positions do not form a regular grid over the input (upsampling,
        transposed convolution, concatenation along a spatial axis, non-uniform adaptive
        pooling, a merge of branches with different strides) or an operation this module does
        not know. TypeError / ValueError: bad ``model`` or ``input_size``.
    """
    module = module_of(model)
    name = resolve_layer(model, layer)
    size = _pair(input_size)
    ctx = _Context(image=size, local=local)
    with eval_mode(module):
        try:
            try:
                graph = _trace(module, leaf=name)
            except Exception:  # some submodule has Python control flow: trace around it
                graph = _trace(module, leaf=name, opaque=_untraceable_modules(module, name))
            field, out = _with_fake_or_real(lambda: _propagate_root(graph, name, ctx))
        except (ReceptiveFieldError, UnknownLayerError):
            raise
        except Exception as exc:  # the model's own forward cannot be traced
            warnings.warn(
                f"no usable torch.fx graph of {type(module).__name__} ({type(exc).__name__}: "
                f"{exc}); "
                "computing receptive fields from forward hooks instead, ASSUMING that any "
                "module input not produced by a module comes from the module that ran just "
                "before it (merges done with functions such as x + y are not seen)",
                stacklevel=2)
            field, out = _with_fake_or_real(lambda: _propagate_hooks(module, name, ctx))
    return _to_receptive_field(field, out, size)


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
        raise InvalidArgumentError(
            f"input_size must be a positive int or a pair (h, w) of them, got "
            f"{size!r}")
    return int(size[0]), int(size[1])


def _with_fake_or_real(run: Callable[[], tuple[_Field, Any]]) -> tuple[_Field, Any]:
    """``run()`` on fake tensors (shapes only), or for real if some operation cannot be faked."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            return run()
    except (ReceptiveFieldError, _NotInGraph):
        raise
    except Exception:  # an op without a fake-tensor kernel: compute for real, once
        with torch.no_grad():
            return run()

