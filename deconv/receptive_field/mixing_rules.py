"""Rules for operations that combine fields: pointwise merges, reductions, norms, linear layers.

Pointwise operations and merges (``+``, ``*``, ``torch.cat`` along channels) take, position by
position, the union of their operands' fields (which needs equal jumps). Reductions, norms over
space, softmax and linear layers make each output depend on every position along some
dimensions: those axes collapse to one field shared by every unit (``jump == 0``).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from deconv.receptive_field.field import _Axis, _collapse, _Field
from deconv.receptive_field.op_call import _first_output, _ntuple, _Op


def _elementwise(op: _Op) -> _Field:
    """Pointwise ops and merges: union of the operands' fields, position by position."""
    out = _first_output(op.out)  # ATen batch norm: (output, mean, invstd)
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


def _linear(op: _Op) -> _Field:
    return _mix_dims(op, [-1], keepdim=True)
