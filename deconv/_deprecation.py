"""Old names kept importable for one release, with a ``DeprecationWarning`` saying what to use.

A module lists its old names in a table and sets ``__getattr__ = deprecated_names(__name__,
table)``; Python calls it only for names the module does not define, so ``from module import
old_name`` and ``module.old_name`` both still work and warn once per use.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable

__all__ = ["deprecated_names", "warn_deprecated"]


def warn_deprecated(old: str, hint: str, stacklevel: int = 3) -> None:
    """Emit the ``DeprecationWarning`` for ``old`` with ``hint`` (what to use instead)."""
    warnings.warn(f"{old} is deprecated and will be removed in the next release; {hint}",
                  DeprecationWarning, stacklevel=stacklevel)


def deprecated_names(module: str, table: dict[str, tuple[str, str | Callable[[], object]]]
                     ) -> Callable[[str], object]:
    """A module ``__getattr__`` serving the old names of ``table`` with a warning.

    Args:
        module (str): the module's ``__name__`` (for messages).
        table (dict[str, tuple[str, str | Callable[[], object]]]): old name -> (hint, target);
            the target is ``"package.module:attribute"`` (imported on first use) or a function
            returning the object.

    Returns:
        Callable[[str], object]: the ``__getattr__`` to assign in the module.
    """

    def __getattr__(name: str) -> object:
        if name not in table:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        hint, target = table[name]
        warn_deprecated(f"{module}.{name}", hint)
        if callable(target):
            return target()
        path, _, attribute = target.partition(":")
        return getattr(importlib.import_module(path), attribute)

    return __getattr__
