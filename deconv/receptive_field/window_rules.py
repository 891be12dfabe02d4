"""Rules for sliding windows and shifts: convolution, pooling, padding, adaptive pooling.

A window of kernel ``k``, stride ``s``, left padding ``p`` and dilation ``d`` maps an axis to
``jump *= s``, ``start -= p * jump_in``, ``end += ((k-1)*d - p) * jump_in``; padding shifts
``start`` and ``end`` by ``-p * jump_in``; adaptive pooling is a window when the sizes divide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from torch import nn

from deconv.receptive_field.field import _Axis, _collapse, _Field, _live
from deconv.receptive_field.op_call import _first_output, _ntuple, _Op

_TRANSPOSED_CONV = "transposed convolutions upsample"


def _dims_of(module: nn.Module) -> int:
    """Spatial dimensions of a pooling or padding module from its class name: MaxPool2d -> 2."""
    return int(type(module).__name__[-2])


def _stride_or_kernel(stride: Any, kernel: Any) -> Any:
    """A pooling stride; None or empty means the kernel size, as in PyTorch."""
    return kernel if stride in (None, (), []) else stride


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
    return _window(op, _dims_of(m), m.kernel_size, _stride_or_kernel(m.stride, m.kernel_size),
                   getattr(m, "padding", 0), getattr(m, "dilation", 1))


def _conv_function(op: _Op) -> _Field:
    if op.name.startswith("convolution") and op.arg(6, "transposed", False):
        raise op.fail(_TRANSPOSED_CONV)
    weight = op.arg(1, "weight")
    n = weight.dim() - 2
    return _window(op, n, tuple(weight.shape[2:]), op.arg(3, "stride", 1),
                   op.arg(4, "padding", 0), op.arg(5, "dilation", 1))


def _pool_function(n: int, dilated: bool) -> Callable[[_Op], _Field]:
    def rule(op: _Op) -> _Field:
        kernel = op.arg(1, "kernel_size")
        stride = _stride_or_kernel(op.arg(2, "stride", None), kernel)
        return _window(op, n, kernel, stride, op.arg(3, "padding", 0),
                       op.arg(4, "dilation", 1) if dilated else 1)

    return rule


def _lp_pool_function(n: int) -> Callable[[_Op], _Field]:
    def rule(op: _Op) -> _Field:
        kernel = op.arg(2, "kernel_size")
        stride = _stride_or_kernel(op.arg(3, "stride", None), kernel)
        return _window(op, n, kernel, stride, 0, 1)

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
    return _shift(op, _ntuple(op.module.padding, 2 * _dims_of(op.module)))


def _pad_function(op: _Op) -> _Field:
    return _shift(op, tuple(op.arg(1, "pad")))


def _adaptive(op: _Op) -> _Field:
    value, field = op.input()
    out = _first_output(op.out)
    nd = value.dim()
    n = 2 if op.module is None else _dims_of(op.module)
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
