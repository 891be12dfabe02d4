"""Exact receptive fields of any unit of any layer, computed from the layers themselves.

A unit ``(y, x)`` of a layer's output reads a rectangle of input pixels, its *receptive field*
(the image patch shown beside each projection in Zeiler & Fergus 2014, Fig. 2). Along each
spatial axis the fields of a layer form a regular grid: unit ``i`` covers the input pixels
``start + i * jump`` .. ``start + i * jump + size - 1``. Each layer maps the grid of its input
to the grid of its output:

* a window (convolution, max/avg/LP pooling) of kernel ``k``, stride ``s``, left padding ``p``
  and dilation ``d``: ``jump *= s``, ``start -= p * jump_in``, ``end += ((k-1)*d - p) * jump_in``
  (``ceil_mode`` only changes how many units there are, not where they look);
* padding (``F.pad``, ``nn.ZeroPad2d``, TF-"same" modules) and slicing shift ``start``;
* elementwise layers (ReLU, BatchNorm in eval, LRN, Dropout, Identity, ...) change nothing;
* merges (``+``, ``*``, ``torch.cat`` along channels) take the union of their operands'
  fields (smallest start, largest end), which requires equal jumps;
* layers that mix every position (global or adaptive-to-1 pooling, ``flatten``, ``Linear``,
  ``GroupNorm``, a mean over space) give every unit the same field: the union of all input
  positions. Such fields have ``jump == 0`` (:attr:`ReceptiveField.is_global`); for the units of
  a fully-connected layer ``output_size`` is ``(1, 1)`` and ``box(0, 0)`` is the whole image
  (less any border pixels that floor-mode strides drop: they reach no output).

Exactness at the borders: a unit whose window reaches into the padding of an intermediate
layer does not read the pixels that padding stands in for. ``box(y, x)`` (clipped) therefore
clips to ``valid_box`` (pixels some unit can read; smaller than the image when a floor-mode
stride drops the last rows or columns) and is empty for units outside ``live_units`` (units that
read only padding, e.g. the border added by ``nn.ZeroPad2d``). Both are None in the usual case.
With these, the clipped box equals the set of pixels with a nonzero gradient for the unit
(tests/test_receptive_field.py checks this on random networks).

The network's graph comes from ``torch.fx.symbolic_trace``. Submodules fx cannot trace (Python
code on shapes, such as TF-"same" padding computed from ``x.shape``) stay opaque calls whose
geometry is read from ``make_fx`` (ATen operations) at the actual input shape. Models whose own
``forward`` cannot be traced fall back to forward hooks on the leaf modules, linked by which
module produced each module's input tensor; a module input that no module produced (e.g. the
result of a functional ``x + y``) is **assumed** to be the output of the module that ran just
before it (reshaped by its shape), so merges done with functions are invisible in that mode (a
warning says so). Shapes come from one forward pass on fake tensors (no computation; the model
is left as it was, train/eval flags included).

Limits: the box is the bounding box of the field: a dilated kernel wider than its input's
field, or a union of two disjoint branches, reads pixels with gaps inside the box (and at a
merge ``valid_box`` is the hull of the branches'). Reflection and replication padding are
treated like zero padding (the mirrored pixels lie inside the image). Upsampling, transposed
convolutions and non-uniform adaptive pooling are rejected with :class:`ReceptiveFieldError`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from deconv.layers import UnknownLayerError, module_of, resolve_layer

__all__ = ["ReceptiveField", "ReceptiveFieldError", "receptive_field"]


class ReceptiveFieldError(ValueError):
    """Raised when a layer's receptive field cannot be expressed as a regular grid of boxes."""


@dataclass(frozen=True)
class ReceptiveField:
    """The receptive fields of every unit of one layer's output, for one input size.

    Unit ``(y, x)`` covers input rows ``start[0] + y * jump[0]`` .. ``+ size[0] - 1`` and columns
    ``start[1] + x * jump[1]`` .. ``+ size[1] - 1`` (before clipping to the image).

    Attributes:
        size (tuple[int, int]): (h, w) in input pixels of one unit's field, unclipped.
        jump (tuple[int, int]): (h, w) input pixels between adjacent units (product of strides);
            0 on an axis whose units all see the same field (after global pooling, flatten or a
            fully-connected layer).
        start (tuple[int, int]): input (y, x) of the top-left pixel of unit (0, 0)'s field; may
            be negative (padding).
        input_size (tuple[int, int]): (h, w) of the input image.
        output_size (tuple[int, int]): (h, w) of the layer's output for that input size; 1 on an
            axis the layer has no longer (e.g. the features of a ``Linear`` layer).
        valid_box (tuple[int, int, int, int] | None): ``(top, left, bottom, right)`` of the
            pixels the layer can read at all; None means the whole image. It is smaller than the
            image when a layer on the way drops the last rows or columns (a floor-mode stride
            that does not fit) and a later padding reaches over them: those pixels are read by
            no unit, so ``box(clip=True)`` clips to this box, which makes it the exact field.
        live_units (tuple[int, int, int, int] | None): ``(top, left, bottom, right)`` of the units
            that read any pixel; None means all. Units outside (e.g. the border added by a
            ``ZeroPad2d`` layer) read only padding: ``box(clip=True)`` is empty for them.
    """

    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[int, int]
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    valid_box: tuple[int, int, int, int] | None = None
    live_units: tuple[int, int, int, int] | None = None

    @property
    def is_global(self) -> bool:
        """bool: every unit has the same field (jump 0 on both axes), e.g. a ``Linear`` layer."""
        return self.jump == (0, 0)

    def box(self, y: int, x: int, clip: bool = True) -> tuple[int, int, int, int]:
        """The field of unit ``(y, x)`` as ``(top, left, bottom, right)``, bottom/right exclusive.

        Args:
            y (int): row of the unit in the layer's output, ``0 <= y < output_size[0]``.
            x (int): column of the unit, ``0 <= x < output_size[1]``.
            clip (bool): clip to the image, or to ``valid_box`` when set: the exact field (a
                field that lies wholly in the padding becomes an empty box with ``top ==
                bottom`` or ``left == right``). If False, the regular grid box, which may
                extend past the image (negative or beyond ``input_size``).

        Returns:
            tuple[int, int, int, int]: ``(top, left, bottom, right)`` in input pixels.

        Raises:
            IndexError: ``y`` or ``x`` is outside the layer's output.
        """
        for name, value, limit in (("y", y, self.output_size[0]), ("x", x, self.output_size[1])):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
                raise IndexError(f"unit {name}={value!r} is outside this layer's output, which "
                                 f"has {limit} positions along {name} (0..{limit - 1})")
        top = self.start[0] + y * self.jump[0]
        left = self.start[1] + x * self.jump[1]
        bottom, right = top + self.size[0], left + self.size[1]
        if clip:
            v_top, v_left, v_bottom, v_right = self.valid_box or (0, 0, *self.input_size)
            top, bottom = min(max(top, v_top), v_bottom), min(max(bottom, v_top), v_bottom)
            left, right = min(max(left, v_left), v_right), min(max(right, v_left), v_right)
            if self.live_units is not None:
                u_top, u_left, u_bottom, u_right = self.live_units
                if not (u_top <= y < u_bottom and u_left <= x < u_right):
                    bottom, right = top, left
        return top, left, bottom, right

    def center(self, y: int, x: int) -> tuple[float, float]:
        """Centre ``(row, col)`` of unit ``(y, x)``'s unclipped field, in pixel-index coordinates.

        Pixel ``(r, c)`` has its centre at ``(r, c)``, so a 1-pixel field at (5, 7) is centred
        at (5.0, 7.0). The centre may lie outside the image for fields that reach into padding.
        """
        top, left, bottom, right = self.box(y, x, clip=False)
        return (top + bottom - 1) / 2.0, (left + right - 1) / 2.0


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
    with _eval_mode(module):
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


# ----------------------------------------------------------------------------------------------
# Field of a tensor: one axis record per image axis (rows, columns).


@dataclass(frozen=True)
class _Axis:
    """Grid of one image axis: unit i reads pixels start + i*jump .. end + i*jump (inclusive).

    ``dim`` is the tensor dimension that indexes this axis, or None once it has been removed
    (flattened, reduced without keepdim, indexed with an integer). ``lo``..``hi`` (inclusive) are
    the pixels that the units of every tensor on the way can read at all: a unit whose window
    reaches into padding of an intermediate layer does not read what that padding stands for
    (e.g. the last pixels dropped by a floor-mode stride), so its exact field is its grid box
    intersected with lo..hi. ``live_lo``..``live_hi`` (inclusive) are the units whose window
    reaches at least one live unit of the layer below (a unit of pure padding reads nothing).
    """

    jump: int
    start: int
    end: int
    dim: int | None
    lo: int
    hi: int
    live_lo: int
    live_hi: int


@dataclass(frozen=True)
class _Field:
    axes: tuple[_Axis, _Axis]

    def map(self, fn: Callable[[_Axis], _Axis]) -> _Field:
        return _Field((fn(self.axes[0]), fn(self.axes[1])))


@dataclass(frozen=True)
class _Context:
    image: tuple[int, int]
    local: bool


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
        raise ValueError(f"input_size must be a positive int or a pair (h, w) of them, got "
                         f"{size!r}")
    return int(size[0]), int(size[1])


def _ntuple(value: Any, n: int) -> tuple:
    if isinstance(value, (tuple, list)):
        return tuple(value) if len(value) == n else tuple(value) * n
    return (value,) * n


def _collapse(axis: _Axis, count: int, dim: int | None) -> _Axis:
    """Every output unit sees all ``count`` input units along ``axis``."""
    alive = axis.live_lo <= axis.live_hi
    return replace(axis, jump=0, end=axis.end + (count - 1) * axis.jump, dim=dim,
                   live_lo=0 if alive else 1, live_hi=_MANY if alive else 0)


_MANY = 2**62  # "every unit"; clamped to the output size by _restrict


def _live(axis: _Axis, step: int, offset: int, span: int) -> tuple[int, int]:
    """Units i reading input units i*step+offset .. +span that reach a live input unit."""
    lo = -((offset + span - axis.live_lo) // step)  # ceil division
    hi = (axis.live_hi - offset) // step
    return max(lo, 0), hi


def _to_receptive_field(field: _Field, out: Any, image: tuple[int, int]) -> ReceptiveField:
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else ()
    sizes = tuple(1 if a.dim is None else int(shape[a.dim]) for a in field.axes)
    (rows, cols) = field.axes
    valid = (max(rows.lo, 0), max(cols.lo, 0), max(min(rows.hi + 1, image[0]), rows.lo, 0),
             max(min(cols.hi + 1, image[1]), cols.lo, 0))
    live = (rows.live_lo, cols.live_lo, max(rows.live_hi + 1, rows.live_lo),
            max(cols.live_hi + 1, cols.live_lo))
    return ReceptiveField(
        size=tuple(a.end - a.start + 1 for a in field.axes),
        jump=tuple(a.jump for a in field.axes),
        start=tuple(a.start for a in field.axes),
        input_size=image, output_size=sizes,
        valid_box=None if valid == (0, 0, *image) else valid,
        live_units=None if live == (0, 0, *sizes) else live)


# ----------------------------------------------------------------------------------------------
# Rules: how each operation maps the field of its input(s) to the field of its output.


@dataclass
class _Op:
    """One call: its arguments (values), the fields of its tensor arguments, and its output."""

    name: str
    module: nn.Module | None
    args: tuple
    kwargs: dict
    fargs: tuple
    fkwargs: dict
    out: Any
    ctx: _Context

    def arg(self, index: int, key: str, default: Any = None) -> Any:
        if index < len(self.args):
            return self.args[index]
        return self.kwargs.get(key, default)

    def operands(self) -> list[tuple[torch.Tensor, _Field]]:
        """(value, field) of every tensor argument that depends on the image, in order."""
        found: list[tuple[torch.Tensor, _Field]] = []

        def walk(value: Any, field: Any) -> None:
            if isinstance(field, _Field) and isinstance(value, torch.Tensor):
                found.append((value, field))
            elif isinstance(field, (tuple, list)) and isinstance(value, (tuple, list)):
                for v, f in zip(value, field):
                    walk(v, f)

        walk(self.args, self.fargs)
        walk(tuple(self.kwargs.values()), tuple(self.fkwargs.values()))
        return found

    def input(self) -> tuple[torch.Tensor, _Field]:
        operands = self.operands()
        if not operands:
            raise ReceptiveFieldError(f"{self.name}: no input depends on the image")
        return operands[0]

    def fail(self, why: str) -> ReceptiveFieldError:
        return ReceptiveFieldError(f"cannot compute the receptive field through {self.name}: "
                                   f"{why}")


def _window(op: _Op, n: int, kernel, stride, padding, dilation) -> _Field:
    """Convolution or pooling over the last ``n`` dimensions."""
    value, field = op.input()
    nd = value.dim()
    kernel, stride, dilation = (_ntuple(v, n) for v in (kernel, stride, dilation))
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0,) * n
        elif padding == "same":  # PyTorch puts the odd extra pixel on the right
            padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
        else:
            raise op.fail(f"unknown padding {padding!r}")
    padding = _ntuple(padding, n)

    def one(axis: _Axis) -> _Axis:
        if axis.dim is None or axis.dim < nd - n:
            return axis
        i = axis.dim - (nd - n)
        k, s, p, d = kernel[i], stride[i], padding[i], dilation[i]
        live_lo, live_hi = _live(axis, s, -p, (k - 1) * d)
        return replace(axis, jump=axis.jump * s, start=axis.start - p * axis.jump,
                       end=axis.end + ((k - 1) * d - p) * axis.jump, live_lo=live_lo,
                       live_hi=live_hi)

    return field.map(one)


def _conv_module(op: _Op) -> _Field:
    m = op.module
    return _window(op, len(m.kernel_size), m.kernel_size, m.stride, m.padding, m.dilation)


def _pool_module(op: _Op) -> _Field:
    m = op.module
    n = int(type(m).__name__[-2])  # MaxPool2d -> 2
    stride = m.stride if m.stride not in (None, ()) else m.kernel_size
    return _window(op, n, m.kernel_size, stride, getattr(m, "padding", 0),
                   getattr(m, "dilation", 1))


def _conv_function(op: _Op) -> _Field:
    if op.name.startswith("convolution") and op.arg(6, "transposed", False):
        raise op.fail("transposed convolutions upsample")
    weight = op.arg(1, "weight")
    n = weight.dim() - 2
    return _window(op, n, tuple(weight.shape[2:]), op.arg(3, "stride", 1),
                   op.arg(4, "padding", 0), op.arg(5, "dilation", 1))


def _pool_function(n: int, dilated: bool) -> Callable[[_Op], _Field]:
    def rule(op: _Op) -> _Field:
        kernel = op.arg(1, "kernel_size")
        stride = op.arg(2, "stride", None)
        stride = kernel if stride in (None, (), []) else stride
        return _window(op, n, kernel, stride, op.arg(3, "padding", 0),
                       op.arg(4, "dilation", 1) if dilated else 1)

    return rule


def _lp_pool_function(n: int) -> Callable[[_Op], _Field]:
    def rule(op: _Op) -> _Field:
        kernel = op.arg(2, "kernel_size")
        stride = op.arg(3, "stride", None)
        return _window(op, n, kernel, kernel if stride is None else stride, 0, 1)

    return rule


def _shift(op: _Op, pad: tuple[int, ...]) -> _Field:
    """``F.pad`` convention: (left, right) of the last dim, then of the one before, ..."""
    value, field = op.input()
    nd = value.dim()
    lefts = {nd - 1 - i: int(pad[2 * i]) for i in range(len(pad) // 2)}

    def one(axis: _Axis) -> _Axis:
        p = lefts.get(axis.dim, 0) if axis.dim is not None else 0
        live_lo, live_hi = _live(axis, 1, -p, 0)
        return replace(axis, start=axis.start - p * axis.jump, end=axis.end - p * axis.jump,
                       live_lo=live_lo, live_hi=live_hi)

    return field.map(one)


def _pad_module(op: _Op) -> _Field:
    padding = op.module.padding
    n = int(type(op.module).__name__[-2])
    return _shift(op, _ntuple(padding, 2 * n))


def _pad_function(op: _Op) -> _Field:
    return _shift(op, tuple(op.arg(1, "pad")))


def _adaptive(op: _Op) -> _Field:
    value, field = op.input()
    out = op.out[0] if isinstance(op.out, (tuple, list)) else op.out
    nd = value.dim()
    n = 2 if op.module is None else int(type(op.module).__name__[-2])
    if op.module is None and op.name[-2] in "123":
        n = int(op.name[-2])

    def one(axis: _Axis) -> _Axis:
        if axis.dim is None or axis.dim < nd - n:
            return axis
        size_in, size_out = value.shape[axis.dim], out.shape[axis.dim]
        if size_out == size_in:
            return axis
        if size_out == 1:
            return _collapse(axis, size_in, axis.dim)
        if size_in % size_out == 0:
            k = size_in // size_out
            live_lo, live_hi = _live(axis, k, 0, k - 1)
            return replace(axis, jump=axis.jump * k, end=axis.end + (k - 1) * axis.jump,
                           live_lo=live_lo, live_hi=live_hi)
        raise op.fail(f"adaptive pooling from {size_in} to {size_out} positions is not a "
                      f"regular grid; choose an input size that makes the layer's input a "
                      f"multiple of {size_out}")

    return field.map(one)


def _mix_dims(op: _Op, dims: list[int], keepdim: bool) -> _Field:
    """Every output position depends on every position along ``dims`` (reductions, norms)."""
    value, field = op.input()
    nd = value.dim()
    dims = sorted({d % nd for d in dims}) if nd else []

    def one(axis: _Axis) -> _Axis:
        if axis.dim is None:
            return axis
        if axis.dim in dims:
            return _collapse(axis, value.shape[axis.dim], axis.dim if keepdim else None)
        if keepdim:
            return axis
        return replace(axis, dim=axis.dim - sum(d < axis.dim for d in dims))

    return field.map(one)


def _reduction(op: _Op) -> _Field:
    value, _ = op.input()
    dim = op.arg(1, "dim", None)
    keepdim = bool(op.arg(2, "keepdim", False))
    if dim is None or dim == [] or dim == ():
        dims = list(range(value.dim()))
    else:
        dims = list(dim) if isinstance(dim, (tuple, list)) else [dim]
    return _mix_dims(op, dims, keepdim)


def _softmax(op: _Op) -> _Field:
    dim = op.module.dim if op.module is not None else op.arg(1, "dim")
    if dim is None:
        raise op.fail("softmax without an explicit dim")
    return _mix_dims(op, [dim], keepdim=True)


def _layer_norm(op: _Op) -> _Field:
    shape = op.module.normalized_shape if op.module is not None else op.arg(1, "normalized_shape")
    return _mix_dims(op, list(range(-len(_ntuple(shape, 1)), 0)), keepdim=True)


def _spatial_norm(op: _Op) -> _Field:
    """GroupNorm / InstanceNorm: statistics over every position of every spatial dim."""
    m = op.module
    if m is not None and getattr(m, "track_running_stats", False) and not m.training:
        return _elementwise(op)
    value, _ = op.input()
    return _mix_dims(op, list(range(2, value.dim())), keepdim=True)


def _elementwise(op: _Op) -> _Field:
    """Pointwise ops and merges: union of the operands' fields, position by position."""
    out = op.out
    if isinstance(out, (tuple, list)) and out:  # ATen batch norm: (output, mean, invstd)
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise op.fail("expected a tensor output")
    nd = out.dim()
    operands = op.operands()
    if not operands:
        raise op.fail("no input depends on the image")
    axes = []
    for a in range(2):
        candidates = []
        for value, field in operands:
            axis = field.axes[a]
            if axis.dim is not None:
                dim = axis.dim + nd - value.dim()
                if value.shape[axis.dim] == 1 and out.shape[dim] != 1:  # broadcast
                    axis = _collapse(axis, 1, dim)
                else:
                    axis = replace(axis, dim=dim)
            candidates.append(axis)
        axes.append(_union(op, candidates, out.shape))
    return _Field(tuple(axes))


def _union(op: _Op, axes: list[_Axis], shape: torch.Size) -> _Axis:
    """Union of the operands' fields along one axis (lo..hi: the hull of theirs)."""
    moving = [a for a in axes if a.jump != 0]
    fixed = [a for a in axes if a.jump == 0]
    if moving and fixed and op.ctx.local:
        fixed = []
    kept = [a for a in moving + fixed if a.live_lo <= a.live_hi and a.lo <= a.hi] or axes[:1]
    hull = dict(lo=min(a.lo for a in kept), hi=max(a.hi for a in kept),
                live_lo=min(a.live_lo for a in kept), live_hi=max(a.live_hi for a in kept))
    if moving:
        jumps = {a.jump for a in moving}
        dims = {a.dim for a in moving}
        if len(jumps) > 1 or len(dims) > 1:
            raise op.fail(f"it merges branches with different strides or layouts (jumps "
                          f"{sorted(jumps)}); their fields are not one regular grid")
        dim = dims.pop()
        axis = _Axis(moving[0].jump, min(a.start for a in moving), max(a.end for a in moving),
                     dim, **hull)
        if not fixed:
            return axis
        count = 1 if dim is None else int(shape[dim])
        whole = _collapse(axis, count, dim)
        start, end = min(a.start for a in fixed), max(a.end for a in fixed)
        if start <= whole.start and end >= whole.end:
            return _Axis(0, start, end, dim, **hull)
        raise op.fail("it merges a position-wise branch with a branch that is the same for "
                      "every position but does not cover it; pass local=True to ignore the "
                      "latter")
    dims = {a.dim for a in fixed}
    dim = dims.pop() if len(dims) == 1 else None
    return _Axis(0, min(a.start for a in fixed), max(a.end for a in fixed), dim, **hull)


def _concat(op: _Op) -> _Field:
    dim = op.arg(1, "dim", 0)
    stack = op.name == "stack"
    nd = op.out.dim()
    for value, field in op.operands():
        for axis in field.axes:
            if not stack and axis.dim is not None and axis.dim == dim % value.dim():
                raise op.fail("it concatenates along a spatial axis")
    if not stack:
        return _elementwise(op)
    dim = dim % nd
    moved = [(v.unsqueeze(dim), f.map(lambda a: a if a.dim is None or a.dim < dim
                                       else replace(a, dim=a.dim + 1)))
             for v, f in op.operands()]
    inner = replace(op, args=(tuple(v for v, _ in moved),), kwargs={},
                    fargs=(tuple(f for _, f in moved),), fkwargs={})
    return _elementwise(inner)


def _reshape(op: _Op) -> _Field:
    """view / reshape / flatten / squeeze / unsqueeze: keep an axis whose trailing shape survives.

    An axis at dim d survives when the output ends with the same sizes as ``input.shape[d:]``;
    otherwise it was merged with other dimensions and every output position sees all of it.
    """
    value, field = op.input()
    return _reshape_field(field, tuple(value.shape), tuple(op.out.shape))


def _reshape_field(field: _Field, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
                   ) -> _Field:
    def one(axis: _Axis) -> _Axis:
        if axis.dim is None:
            return axis
        suffix = in_shape[axis.dim:]
        if len(suffix) <= len(out_shape) and out_shape[len(out_shape) - len(suffix):] == suffix:
            return replace(axis, dim=len(out_shape) - len(suffix))
        if in_shape[axis.dim] == 1:  # a size-1 axis squeezed away: the one unit's field
            return replace(axis, dim=None)
        return _collapse(axis, in_shape[axis.dim], None)

    return field.map(one)


def _flatten(op: _Op) -> _Field:
    value, field = op.input()
    nd = value.dim()
    if op.module is not None:
        start, end = op.module.start_dim, op.module.end_dim
    else:
        start, end = op.arg(1, "start_dim", 0), op.arg(2, "end_dim", -1)
    start, end = start % nd, end % nd
    if start == end:
        return field

    def one(axis: _Axis) -> _Axis:
        if axis.dim is None or axis.dim < start:
            return axis
        if axis.dim > end:
            return replace(axis, dim=axis.dim - (end - start))
        return _collapse(axis, value.shape[axis.dim], None)

    return field.map(one)


def _linear(op: _Op) -> _Field:
    return _mix_dims(op, [-1], keepdim=True)


def _permute(op: _Op) -> _Field:
    value, field = op.input()
    nd = value.dim()
    if op.name in ("transpose", "swapaxes", "swapdims"):
        a, b = op.arg(1, "dim0") % nd, op.arg(2, "dim1") % nd
        order = list(range(nd))
        order[a], order[b] = b, a
    else:
        dims = op.args[1:] if op.name == "permute" and len(op.args) > 2 else op.arg(1, "dims")
        order = [d % nd for d in dims]
    return field.map(lambda a: a if a.dim is None else replace(a, dim=order.index(a.dim)))


def _getitem(op: _Op) -> _Field:
    source, fsource = op.args[0], op.fargs[0]
    index = op.args[1]
    if isinstance(source, (tuple, list)):  # an element of a tuple output (split, max, ...)
        field = fsource[index] if isinstance(fsource, (tuple, list)) else fsource
        if not isinstance(field, _Field):
            raise op.fail("indexes an output with no field")
        return field
    if not isinstance(source, torch.Tensor) or not isinstance(fsource, _Field):
        raise op.fail("indexes something that is not a tensor")
    items = index if isinstance(index, tuple) else (index,)
    nd = source.dim()
    explicit = sum(1 for i in items if i is not None and i is not Ellipsis)
    mapping: dict[int, tuple[int | None, int, int]] = {}  # in dim -> (out dim, offset, step)
    in_dim = out_dim = 0
    for item in items:
        if item is Ellipsis:
            for _ in range(nd - explicit):
                mapping[in_dim] = (out_dim, 0, 1)
                in_dim, out_dim = in_dim + 1, out_dim + 1
        elif item is None:
            out_dim += 1
        elif isinstance(item, slice):
            first, _, step = item.indices(source.shape[in_dim])
            mapping[in_dim] = (out_dim, first, step)
            in_dim, out_dim = in_dim + 1, out_dim + 1
        elif isinstance(item, int) and not isinstance(item, bool):
            mapping[in_dim] = (None, item % source.shape[in_dim], 1)
            in_dim += 1
        else:
            raise op.fail(f"index {item!r} is not a slice or an integer")
    while in_dim < nd:
        mapping[in_dim] = (out_dim, 0, 1)
        in_dim, out_dim = in_dim + 1, out_dim + 1

    def one(axis: _Axis) -> _Axis:
        if axis.dim is None:
            return axis
        dim, first, step = mapping[axis.dim]
        live_lo, live_hi = _live(axis, step, first, 0)
        if dim is None:  # an integer index: one unit
            live_lo, live_hi = (0, 0) if live_lo <= 0 <= live_hi else (1, 0)
        return replace(axis, jump=axis.jump * step, start=axis.start + first * axis.jump,
                       end=axis.end + first * axis.jump, dim=dim, live_lo=live_lo,
                       live_hi=live_hi)

    return fsource.map(one)


def _slice(op: _Op) -> _Field:
    """ATen ``slice(x, dim, start, end, step)``: ``x[..., start:end:step]`` along ``dim``."""
    value, _ = op.input()
    dim = op.arg(1, "dim", 0) % value.dim()
    index = slice(op.arg(2, "start", None), op.arg(3, "end", None), op.arg(4, "step", 1))
    items = (slice(None),) * dim + (index,)
    return _getitem(replace(op, args=(value, items), fargs=(op.fargs[0], None)))


def _select(op: _Op) -> _Field:
    """ATen ``select(x, dim, index)``: ``x[..., index]`` along ``dim``."""
    value, _ = op.input()
    dim = op.arg(1, "dim") % value.dim()
    items = (slice(None),) * dim + (int(op.arg(2, "index")),)
    return _getitem(replace(op, args=(value, items), fargs=(op.fargs[0], None)))


def _split(op: _Op) -> Any:
    value, field = op.input()
    dim = op.arg(2, "dim", 0) % value.dim()
    if any(a.dim == dim for a in field.axes):
        raise op.fail("it splits along a spatial axis")
    return field


def _unsupported(why: str) -> Callable[[_Op], _Field]:
    def rule(op: _Op) -> _Field:
        raise op.fail(why)

    return rule


_POINTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh,
    nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.Hardshrink,
    nn.Softshrink, nn.modules.batchnorm._BatchNorm, nn.LocalResponseNorm, nn.CrossMapLRN2d,
    nn.modules.dropout._DropoutNd, nn.AlphaDropout, nn.FeatureAlphaDropout, nn.Identity,
    nn.ChannelShuffle, nn.Softmax2d,
)

_MODULE_RULES: list[tuple[type | tuple[type, ...], Callable[[_Op], _Field]]] = [
    (_POINTWISE_MODULES, _elementwise),
    (nn.modules.conv._ConvTransposeNd, _unsupported("transposed convolutions upsample")),
    (nn.modules.conv._ConvNd, _conv_module),
    ((nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
      nn.modules.pooling._LPPoolNd), _pool_module),
    ((nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd), _adaptive),
    ((nn.modules.padding._ConstantPadNd, nn.modules.padding._ReflectionPadNd,
      nn.modules.padding._ReplicationPadNd, nn.modules.padding.CircularPad2d), _pad_module),
    (nn.Flatten, _flatten),
    (nn.Unflatten, _reshape),
    ((nn.Linear, nn.Bilinear, nn.LazyLinear), _linear),
    (nn.LayerNorm, _layer_norm),
    ((nn.GroupNorm, nn.modules.instancenorm._InstanceNorm), _spatial_norm),
    ((nn.Softmax, nn.LogSoftmax, nn.Softmin), _softmax),
    ((nn.Upsample, nn.PixelShuffle, nn.PixelUnshuffle, nn.Fold, nn.Unfold),
     _unsupported("its output positions are not a strided grid over its input")),
]

_FUNCTION_RULES: dict[Any, Callable[[_Op], _Field]] = {
    F.max_pool1d: _pool_function(1, True), F.max_pool2d: _pool_function(2, True),
    F.max_pool3d: _pool_function(3, True), F.avg_pool1d: _pool_function(1, False),
    F.avg_pool2d: _pool_function(2, False), F.avg_pool3d: _pool_function(3, False),
    F.lp_pool1d: _lp_pool_function(1), F.lp_pool2d: _lp_pool_function(2),
    F.adaptive_max_pool1d: _adaptive, F.adaptive_max_pool2d: _adaptive,
    F.adaptive_max_pool3d: _adaptive,
}

_NAMED_RULES: dict[str, Callable[[_Op], _Field]] = {
    **dict.fromkeys(("conv1d", "conv2d", "conv3d", "convolution"), _conv_function),
    **dict.fromkeys(("max_pool2d_with_indices", "max_pool2d"), _pool_function(2, True)),
    **dict.fromkeys(("max_pool1d", "max_pool1d_with_indices"), _pool_function(1, True)),
    **dict.fromkeys(("max_pool3d", "max_pool3d_with_indices"), _pool_function(3, True)),
    "avg_pool1d": _pool_function(1, False), "avg_pool2d": _pool_function(2, False),
    "avg_pool3d": _pool_function(3, False),
    "constant_pad_nd": _pad_function,
    **dict.fromkeys(("addmm", "mm"), _linear),
    "slice": _slice,
    "select": _select,
    **dict.fromkeys(("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
                     "adaptive_max_pool2d_with_indices"), _adaptive),
    **dict.fromkeys(("pad", "constant_pad_nd"), _pad_function),
    "linear": _linear,
    "layer_norm": _layer_norm,
    **dict.fromkeys(("group_norm", "instance_norm"), _spatial_norm),
    **dict.fromkeys(("softmax", "log_softmax", "softmin"), _softmax),
    **dict.fromkeys(("mean", "sum", "amax", "amin", "max", "min", "std", "var", "logsumexp",
                     "norm", "prod", "nansum", "nanmean", "argmax", "argmin", "all", "any"),
                    _reduction),
    "flatten": _flatten,
    **dict.fromkeys(("view", "reshape", "squeeze", "unsqueeze", "unflatten", "expand_as"),
                    _reshape),
    **dict.fromkeys(("permute", "transpose", "swapaxes", "swapdims"), _permute),
    "getitem": _getitem,
    **dict.fromkeys(("cat", "concat", "concatenate", "stack"), _concat),
    **dict.fromkeys(("split", "chunk", "tensor_split", "unbind"), _split),
    **dict.fromkeys(("interpolate", "upsample", "upsample_nearest", "upsample_bilinear",
                     "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
                     "pixel_shuffle", "pixel_unshuffle", "unfold", "fold", "roll",
                     "grid_sample"),
                    _unsupported("its output positions are not a strided grid over its input")),
    **dict.fromkeys((
        "add", "sub", "mul", "truediv", "div", "floordiv", "neg", "pow", "abs", "exp", "log",
        "sqrt", "rsqrt", "maximum", "minimum", "where", "clamp", "clip", "sign", "matmul_scalar",
        "iadd", "isub", "imul", "itruediv", "add_", "sub_", "mul_", "div_", "clamp_",
        "relu", "relu_", "relu6", "leaky_relu", "leaky_relu_", "elu", "elu_", "selu", "celu",
        "gelu", "silu", "mish", "hardswish", "hardsigmoid", "hardtanh", "hardtanh_", "sigmoid",
        "sigmoid_", "tanh", "tanh_", "softplus", "softsign", "prelu", "rrelu", "threshold",
        "logsigmoid", "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
        "feature_alpha_dropout", "batch_norm", "local_response_norm", "stochastic_depth",
        "contiguous", "clone", "float", "double", "half", "to", "type", "type_as", "detach",
        "requires_grad_", "channel_shuffle", "native_channel_shuffle", "scale",
        "native_batch_norm", "native_batch_norm_legit_no_training", "to_copy", "alias",
        "expand", "unsafe_view", "hardtanh", "add", "mul", "sub", "div", "copy",
    ), _elementwise),
}


def _rule_for(kind: str, target: Any, module: nn.Module | None) -> Callable[[_Op], _Field]:
    if kind == "call_module":
        for types, rule in _MODULE_RULES:
            if isinstance(module, types):
                return rule
        raise ReceptiveFieldError(
            f"cannot compute the receptive field through module {type(module).__name__}: no "
            f"rule for it (known: convolutions, pooling, padding, pointwise layers, norms, "
            f"flatten, linear)")
    if target in _FUNCTION_RULES:
        return _FUNCTION_RULES[target]
    name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
    name = name.split(".")[0]  # ATen overloads: "convolution.default"
    rule = _NAMED_RULES.get(name) or _NAMED_RULES.get(name.lstrip("_"))
    if rule is None:
        raise ReceptiveFieldError(
            f"cannot compute the receptive field through {name!r}: no rule for this function "
            f"or method")
    return rule


def _apply(kind: str, target: Any, module: nn.Module | None, args: tuple, kwargs: dict,
           fargs: tuple, fkwargs: dict, out: Any, ctx: _Context) -> _Field | None:
    """Field of one call's output, or None when no argument depends on the image."""
    if not _has_field((fargs, tuple(fkwargs.values()))):
        return None
    if kind == "call_method" and target in ("size", "dim", "numel", "element_size",
                                            "get_device", "stride"):
        return None
    name = type(module).__name__ if module is not None else (
        target if isinstance(target, str) else getattr(target, "__name__", str(target)))
    op = _Op(name=name, module=module, args=args, kwargs=kwargs, fargs=fargs, fkwargs=fkwargs,
             out=out, ctx=ctx)
    if not isinstance(out, (torch.Tensor, tuple, list)):
        return None  # shapes and other Python values
    field = _rule_for(kind, target, module)(op)
    first = out[0] if isinstance(out, (tuple, list)) and out else out
    return _restrict(field, first) if isinstance(first, torch.Tensor) else field


def _has_field(value: Any) -> bool:
    if isinstance(value, _Field):
        return True
    if isinstance(value, (tuple, list)):
        return any(_has_field(v) for v in value)
    if isinstance(value, dict):
        return any(_has_field(v) for v in value.values())
    return False


def _image_field(image: tuple[int, int]) -> _Field:
    """The input: unit (y, x) is pixel (y, x), on dims 2 and 3 of [N, C, H, W]."""
    return _Field((_Axis(1, 0, 0, 2, 0, image[0] - 1, 0, image[0] - 1),
                   _Axis(1, 0, 0, 3, 0, image[1] - 1, 0, image[1] - 1)))


def _restrict(field: _Field, out: torch.Tensor) -> _Field:
    """Intersect lo..hi with the pixels the units of ``out`` cover (they may read no further)."""

    def one(axis: _Axis) -> _Axis:
        count = 1 if axis.dim is None else int(out.shape[axis.dim])
        live_lo, live_hi = max(axis.live_lo, 0), min(axis.live_hi, count - 1)
        if live_lo > live_hi:  # no unit reads any pixel
            return replace(axis, lo=1, hi=0, live_lo=1, live_hi=0)
        first = axis.start + live_lo * axis.jump
        last = axis.end + live_hi * axis.jump
        return replace(axis, lo=max(axis.lo, first), hi=min(axis.hi, last), live_lo=live_lo,
                       live_hi=live_hi)

    return field.map(one)


# ----------------------------------------------------------------------------------------------
# Propagation through a torch.fx graph (recursing into the target module when it is not a leaf).


class _Tracer(fx.Tracer):
    def __init__(self, leaf: str | None = None, opaque: frozenset[str] = frozenset()):
        super().__init__()
        self.leaf, self.opaque = leaf, opaque

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return (qualname == self.leaf or qualname in self.opaque
                or super().is_leaf_module(m, qualname))


class _NotInGraph(Exception):
    """The layer is not a node of the traced graph (it is inside an opaque module)."""


def _trace(module: nn.Module, leaf: str | None = None,
           opaque: frozenset[str] = frozenset()) -> fx.GraphModule:
    tracer = _Tracer(leaf, opaque)
    graph = tracer.trace(module)
    return fx.GraphModule(tracer.root, graph)


def _untraceable_modules(module: nn.Module, leaf: str) -> frozenset[str]:
    """Names of the submodules fx cannot trace (children first), to keep as opaque calls.

    Their geometry is then read from ``make_fx`` at the actual input shape (see
    :func:`_propagate_submodule`); shape-dependent code such as TF-"same" padding traces there.
    """
    opaque: set[str] = set()
    for name, sub in reversed(list(module.named_modules())):
        if not name or _is_rule_leaf(sub):
            continue
        inner = frozenset(n[len(name) + 1:] for n in opaque if n.startswith(name + "."))
        try:
            _trace(sub, opaque=inner)
        except Exception:
            opaque.add(name)
    return frozenset(opaque)


def _propagate_root(gm: fx.GraphModule, name: str, ctx: _Context) -> tuple[_Field, Any]:
    targets = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == name]
    if not targets:  # it runs inside a module that could only be traced as a whole
        raise _NotInGraph(name)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    image = _example_input(gm, ctx.image)
    inputs = {placeholders[0]: (image, _image_field(ctx.image))}
    results = _propagate_graph(gm, inputs, ctx, stop=targets)
    fields = [results[t] for t in targets]
    if len({f for f, _ in fields}) > 1:
        warnings.warn(f"module {name!r} runs {len(targets)} times with different receptive "
                      f"fields; using its last call", stacklevel=3)
    return fields[-1]


def _propagate_graph(gm: fx.GraphModule, inputs: dict[fx.Node, tuple[Any, _Field | None]],
                     ctx: _Context, stop: list[fx.Node]) -> dict[fx.Node, tuple[Any, Any]]:
    """Propagate values and fields to the nodes ``stop``, visiting only their ancestors."""
    needed: set[fx.Node] = set()
    pending = list(stop)
    while pending:
        node = pending.pop()
        if node not in needed:
            needed.add(node)
            pending.extend(node.all_input_nodes)
    interpreter = fx.Interpreter(gm)
    values: dict[fx.Node, Any] = {}
    fields: dict[fx.Node, Any] = {}
    for node in gm.graph.nodes:
        if node not in needed:
            continue
        if node.op == "placeholder":
            value, field = inputs.get(node, (_default_of(node), None))
            values[node], fields[node] = value, field
            continue
        interpreter.env = values
        args, kwargs = interpreter.fetch_args_kwargs_from_env(node)
        fargs = fx.node.map_arg(node.args, lambda n: fields[n])
        fkwargs = fx.node.map_arg(node.kwargs, lambda n: fields[n])
        module = gm.get_submodule(node.target) if node.op == "call_module" else None
        if node.op == "get_attr":
            values[node], fields[node] = interpreter.run_node(node), None
            continue
        out = interpreter.run_node(node)
        if node.op == "call_module" and not _is_rule_leaf(module):
            field = _propagate_submodule(module, args, kwargs, fargs, fkwargs, ctx)
        else:
            field = _apply(node.op, node.target, module, args, kwargs, fargs, fkwargs, out, ctx)
            if isinstance(out, (tuple, list)) and isinstance(field, _Field):
                field = tuple(field for _ in out)
        values[node], fields[node] = out, field
    return {node: (fields[node], values[node]) for node in stop}


def _is_rule_leaf(module: nn.Module) -> bool:
    return any(isinstance(module, types) for types, _ in _MODULE_RULES)


def _propagate_submodule(module: nn.Module, args: tuple, kwargs: dict, fargs: tuple,
                         fkwargs: dict, ctx: _Context) -> _Field:
    """Field of a module's output (a Sequential, a residual block, a custom layer).

    The module is traced on its own with ``torch.fx``; if that fails (Python code that depends
    on shapes), with ``make_fx`` at the actual input shapes, which records ATen operations.
    """
    inputs: dict[fx.Node, tuple[Any, Any]] = {}
    try:
        gm = _trace(module)
    except Exception:
        from torch.fx.experimental.proxy_tensor import make_fx

        try:
            gm = make_fx(module)(*args, **kwargs)
        except Exception as exc:
            raise ReceptiveFieldError(
                f"cannot compute the receptive field through {type(module).__name__}: neither "
                f"torch.fx nor make_fx can trace it ({type(exc).__name__}: {exc})") from exc
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        pairs = [(v, f) for v, f in zip((*args, *kwargs.values()), (*fargs, *fkwargs.values()))
                 if isinstance(v, torch.Tensor)]
        if len(pairs) != len(placeholders):
            raise ReceptiveFieldError(f"cannot match the inputs of {type(module).__name__} to "
                                      f"its traced graph; give it tensor arguments only") from None
        inputs = dict(zip(placeholders, pairs))
    else:
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        for i, node in enumerate(placeholders):
            if i < len(args):
                inputs[node] = (args[i], fargs[i])
            elif node.target in kwargs:
                inputs[node] = (kwargs[node.target], fkwargs[node.target])
    output = next(n for n in gm.graph.nodes if n.op == "output")
    sources = [n for n in output.all_input_nodes]
    results = _propagate_graph(gm, inputs, ctx, stop=sources)
    for node in sources:
        field, _ = results[node]
        field = field[0] if isinstance(field, tuple) else field
        if isinstance(field, _Field):
            return field
    raise ReceptiveFieldError(f"the output of {type(module).__name__} does not depend on the "
                              f"image")


def _default_of(node: fx.Node) -> Any:
    return node.args[0] if node.args else None


def _example_input(module: nn.Module, image: tuple[int, int]) -> torch.Tensor:
    channels, dtype, device = 3, torch.float32, torch.device("cpu")
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            channels, dtype, device = m.in_channels, m.weight.dtype, m.weight.device
            break
    return torch.zeros(1, channels, *image, dtype=dtype, device=device)


# ----------------------------------------------------------------------------------------------
# Fallback for models fx cannot trace: forward hooks on leaf modules, linked by tensor identity.


def _propagate_hooks(module: nn.Module, name: str, ctx: _Context) -> tuple[_Field, Any]:
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
            field = field_of(out[0] if isinstance(out, (tuple, list)) else out)
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


# ----------------------------------------------------------------------------------------------
# Running without computing: fake tensors carry shapes only; the model is left as it was.


def _with_fake_or_real(run: Callable[[], tuple[_Field, Any]]) -> tuple[_Field, Any]:
    from torch._subclasses.fake_tensor import FakeTensorMode

    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            return run()
    except (ReceptiveFieldError, _NotInGraph):
        raise
    except Exception:  # an op without a fake-tensor kernel: compute for real, once
        with torch.no_grad():
            return run()


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode for the duration (batch-norm statistics must not move), then restored."""
    modes = [(m, m.training) for m in module.modules()]
    try:
        module.eval()
        yield
    finally:
        for m, training in modes:
            m.training = training

