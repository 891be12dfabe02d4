"""Rules for operations that move or select dimensions: reshape, flatten, permute, indexing.

An image axis follows its tensor dimension through a reshape as long as the trailing sizes from
that dimension on survive; otherwise (flattened into features) every output position sees all of
it. Indexing with a slice ``first::step`` multiplies the jump by ``step`` and shifts the start
by ``first`` units; an integer index keeps one unit and removes the dimension.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from deconv.receptive_field.field import _Axis, _collapse, _Field, _live
from deconv.receptive_field.op_call import _Op


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


def _index_along(op: _Op, dim: int, item: slice | int) -> _Field:
    """``x[..., item]`` with ``item`` on dimension ``dim`` of the call's first input ``x``."""
    value, _ = op.input()
    items = (slice(None),) * (dim % value.dim()) + (item,)
    return _getitem(replace(op, args=(value, items), fargs=(op.fargs[0], None)))


def _slice(op: _Op) -> _Field:
    """ATen ``slice(x, dim, start, end, step)``: ``x[..., start:end:step]`` along ``dim``."""
    index = slice(op.arg(2, "start", None), op.arg(3, "end", None), op.arg(4, "step", 1))
    return _index_along(op, op.arg(1, "dim", 0), index)


def _select(op: _Op) -> _Field:
    """ATen ``select(x, dim, index)``: ``x[..., index]`` along ``dim``."""
    return _index_along(op, op.arg(1, "dim"), int(op.arg(2, "index")))


def _split(op: _Op) -> Any:
    value, field = op.input()
    dim = op.arg(2, "dim", 0) % value.dim()
    if any(a.dim == dim for a in field.axes):
        raise op.fail("it splits along a spatial axis")
    return field
