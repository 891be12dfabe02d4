"""Argument types and checks shared by every ``deconv`` subcommand (one function each).

Each ``argparse`` type wraps a :mod:`deconv.validation` check, so the CLI refuses a value with
the same message the API gives; argparse reports it as ``deconv <command>: error: ...``.
"""

from __future__ import annotations

import argparse

from deconv.errors import DeconvError
from deconv.layers import LAYER_RULE, resolve_layer
from deconv.validation import check_nonnegative_int, check_positive_int

__all__ = ["positive_int", "nonnegative_int", "LAYER_HELP", "layer_of"]

#: The help text of every ``--layer`` option.
LAYER_HELP = f"layer: {LAYER_RULE}"


def positive_int(text: str) -> int:
    """``type=`` for options that take an int >= 1 (``--size 0`` is refused, not coerced)."""
    return _checked(check_positive_int, text)


def nonnegative_int(text: str) -> int:
    """``type=`` for options that take an int >= 0 (an index: ``--channel -1`` is refused)."""
    return _checked(check_nonnegative_int, text)


def _checked(check, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    try:
        return check("value", value)
    except DeconvError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("value ", "", 1)) from None


def layer_of(model, text: str) -> str:
    """The module name a ``--layer`` value names on ``model`` (see :func:`resolve_layer`)."""
    return resolve_layer(model, text)
