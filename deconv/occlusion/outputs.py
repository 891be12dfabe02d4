"""The one output type of every occlusion engine, and how a captured layer is reduced."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from deconv._deprecation import warn_deprecated
from deconv.errors import InvalidTypeError

__all__ = ["OcclusionOutputs", "REDUCTIONS", "reduce_capture"]

#: How an engine returns the captured layer: ``"sum"`` per feature map over space, None whole.
REDUCTIONS = ("sum", None)


@dataclass(frozen=True)
class OcclusionOutputs:
    """What an engine computes for a batch of occluder windows (one row per window).

    Attributes:
        output (torch.Tensor | None): the model's output for each occluded image ``[P, ...]``
            (logits for a classifier); None when the engine was built with
            ``need_output=False``.
        captured (torch.Tensor | None): the captured layer's output, per feature map summed over
            space ``[P, C]`` (``reduce="sum"``) or whole ``[P, C, H, W]`` (``reduce=None``);
            None without a capture layer.
    """

    output: torch.Tensor | None
    captured: torch.Tensor | None

    @property
    def layer_totals(self) -> torch.Tensor | None:
        """Deprecated name of :attr:`captured` (from the old ``OccludedBatch``)."""
        warn_deprecated("OcclusionOutputs.layer_totals", "use .captured")
        return self.captured


def reduce_capture(tensor, reduce: str | None) -> torch.Tensor:
    """A copy of a captured layer output, summed over space per feature map for ``"sum"``.

    Args:
        tensor (torch.Tensor): the layer output ``[B, C, ...]``.
        reduce (str | None): ``"sum"`` -> ``[B, C]``; None -> the whole tensor (copied, so an
            inplace op later in the forward cannot change it).

    Raises:
        TypeError: the layer does not output a ``[B, C, ...]`` tensor.
    """
    if not isinstance(tensor, torch.Tensor) or tensor.ndim < 2:
        raise InvalidTypeError("the captured layer must output a tensor [B, C, ...]; got "
                               f"{type(tensor).__name__} of shape {getattr(tensor, 'shape', None)}")
    if reduce is None or tensor.ndim == 2:
        return tensor.clone()
    return tensor.flatten(2).sum(2)
