"""Deprecated: the temporary model state lives in :mod:`deconv.model_state` (``eval_mode``)."""

from __future__ import annotations

from functools import partial

from deconv._deprecation import deprecated_names

__all__: list[str] = []


def _inference_state():
    from deconv.model_state import eval_mode

    return partial(eval_mode, inplace=False)


__getattr__ = deprecated_names(__name__, {
    "inference_state": ("use deconv.model_state.eval_mode(model, inplace=False)",
                        _inference_state),
})
