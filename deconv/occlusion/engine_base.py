"""What every occlusion engine shares: argument checks, the ``with`` lifetime, the naive fall-back.

An engine (see :mod:`deconv.occlusion.engines`) derives from :class:`OcclusionEngine`, calls
:meth:`OcclusionEngine._setup` first in its ``__init__`` (and sets ``incremental = False`` for a
model it cannot run: :meth:`OcclusionEngine.outputs` then uses the naive forward) and implements
``_outputs(boxes)``; ``close`` (also on leaving a ``with`` block) drops everything but the
settings, so no cache outlives the sweep.
"""

from __future__ import annotations

import warnings

import torch

from deconv.errors import InvalidArgumentError
from deconv.layers import module_of
from deconv.occlusion.fills import make_fill
from deconv.occlusion.grid import check_boxes
from deconv.occlusion.outputs import REDUCTIONS, OcclusionOutputs

__all__ = ["OcclusionEngine"]

# What close() keeps: the settings (an engine's caches are everything else).
_SETTINGS = frozenset({"module", "layer", "reduce", "batch_size", "need_output", "out_dtype",
                       "max_fraction", "work", "incremental", "reason", "closed"})


class OcclusionEngine:
    """Base of the occlusion engines: checks, lifetime (``with``), and the naive fall-back."""

    closed = False
    incremental = True  # False: the engine cannot run this model; outputs() runs it naively

    def _setup(self, model, image: torch.Tensor, fill, *, layer: str | None, reduce: str | None,
               batch_size: int, need_output: bool, max_fraction: float | None = None) -> None:
        """Check the common arguments and keep them (``image`` as ``[C, H, W]``, fill as image).

        Raises:
            ValueError: an image that is not one ``[C, H, W]``, a bad ``reduce``,
                ``batch_size`` or ``max_fraction``, or a fill of the wrong shape.
        """
        self.module = module_of(model)
        if image.ndim == 4 and image.shape[0] == 1:
            image = image[0]
        if image.ndim != 3:
            raise InvalidArgumentError(f"image must be [C, H, W]; got shape {list(image.shape)}")
        if reduce not in REDUCTIONS:
            raise InvalidArgumentError(f"reduce must be 'sum' or None, got {reduce!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be a positive int, got {batch_size!r}")
        if max_fraction is not None and not 0 < max_fraction <= 1:
            raise InvalidArgumentError(
                f"max_fraction must be in (0, 1] or None, got {max_fraction}")
        self.image, self.out_dtype = image, image.dtype
        self.fill, _ = make_fill(fill, image)
        self.layer, self.reduce, self.batch_size = layer, reduce, batch_size
        self.need_output, self.max_fraction = need_output, max_fraction

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the caches (the engine cannot be used afterwards)."""
        for name in [n for n in self.__dict__ if n not in _SETTINGS]:
            del self.__dict__[name]
        self.closed = True

    def outputs(self, boxes) -> OcclusionOutputs:
        """Model outputs (and the layer's, ``captured``) for each occluder window.

        Args:
            boxes (torch.Tensor): long ``[P, 4]`` windows ``(y0, y1, x0, x1)`` in input pixels,
                end exclusive; parts outside the image are ignored.

        Returns:
            OcclusionOutputs: ``output [P, ...]`` (None with ``need_output=False``) and
            ``captured`` (None without a layer), one row per window, in order.

        Raises:
            RuntimeError: the engine was closed.
            ValueError: boxes not ``[P, 4]``.
        """
        if self.closed:
            raise RuntimeError(f"this {type(self).__name__} was closed; build a new one")
        boxes = check_boxes(boxes)
        return self._outputs(boxes) if self.incremental else self._naive_outputs(boxes)

    def _outputs(self, boxes: torch.Tensor) -> OcclusionOutputs:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fall_back(self, message: str, reason: str) -> None:
        """Give up the incremental path: warn, and keep the unoccluded reference run naively.

        Args:
            message (str): what cannot run (the warning's start).
            reason (str): why, kept as ``self.reason`` and said in the warning.
        """
        from deconv.occlusion.naive import naive_occlusion_outputs

        self.incremental, self.reason = False, reason
        warnings.warn(f"{message} ({reason}); falling back to the naive batched forward",
                      stacklevel=3)
        self.reference = naive_occlusion_outputs(
            self.module, self.image, 0.0, torch.zeros(1, 4, dtype=torch.long),
            layer=self.layer, reduce=self.reduce)

    def _naive_outputs(self, boxes: torch.Tensor) -> OcclusionOutputs:
        """The naive batched forward (an engine's fall-back for a model it cannot run)."""
        from deconv.occlusion.naive import naive_occlusion_outputs

        result = naive_occlusion_outputs(self.module, self.image, self.fill, boxes,
                                         layer=self.layer, reduce=self.reduce,
                                         batch_size=self.batch_size)
        return OcclusionOutputs(result.output if self.need_output else None, result.captured)
