"""One call of an operation, as the rules see it, and small helpers shared by the rules.

A rule is a function ``rule(op: _Op) -> _Field``: it reads the call's arguments, the fields of
its image-dependent tensor arguments and its output, and returns the field of the output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from deconv.receptive_field.field import ReceptiveFieldError, _cannot, _Context, _Field


def _ntuple(value: Any, n: int) -> tuple:
    """``value`` as an ``n``-tuple (a kernel size, stride, ... given once or per dimension)."""
    if isinstance(value, (tuple, list)):
        return tuple(value) if len(value) == n else tuple(value) * n
    return (value,) * n


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
        return _cannot(self.name, why)


def _unsupported(why: str) -> Callable[[_Op], _Field]:
    """A rule that rejects the operation, saying ``why``."""
    def rule(op: _Op) -> _Field:
        raise op.fail(why)

    return rule


def _first_output(out: Any) -> Any:
    """The first element of a tuple output (ATen batch norm, max pool with indices), else out."""
    return out[0] if isinstance(out, (tuple, list)) and out else out
