"""Receptive fields as grids: the public result and the per-axis record that rules transform.

:class:`ReceptiveField` is what :func:`deconv.receptive_field.receptive_field` returns. While a
model is walked, every tensor that depends on the image carries a :class:`_Field`: one
:class:`_Axis` per image axis (rows, columns), the grid ``start + i * jump .. end + i * jump``
of input pixels that unit ``i`` reads, plus the pixels and units that are live at all (see the
package docstring for why those make the clipped box exact).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from deconv.errors import OutOfRangeError, ReceptiveFieldError


def _cannot(what: str, why: str) -> ReceptiveFieldError:
    """The error for an operation ``what`` that has no regular-grid receptive field."""
    return ReceptiveFieldError(f"cannot compute the receptive field through {what}: {why}")


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
                raise OutOfRangeError(
                    f"unit {name}={value!r} is outside this layer's output, which "
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


_MANY = 2**62  # "every unit"; clamped to the output size by _restrict


def _collapse(axis: _Axis, count: int, dim: int | None) -> _Axis:
    """Every output unit sees all ``count`` input units along ``axis``."""
    alive = axis.live_lo <= axis.live_hi
    return replace(axis, jump=0, end=axis.end + (count - 1) * axis.jump, dim=dim,
                   live_lo=0 if alive else 1, live_hi=_MANY if alive else 0)


def _live(axis: _Axis, step: int, offset: int, span: int) -> tuple[int, int]:
    """Units i reading input units i*step+offset .. +span that reach a live input unit."""
    lo = -((offset + span - axis.live_lo) // step)  # ceil division
    hi = (axis.live_hi - offset) // step
    return max(lo, 0), hi


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
