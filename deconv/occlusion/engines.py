"""Occlusion engines: given a batch of occluder windows, the model outputs and feature totals.

This is the one place that runs a network on occluded images. :func:`evaluate_occluded`
dispatches on ``method`` to a registered engine; ``"naive"`` builds every occluded image and
runs the whole network on the batch (one forward per position, batched). A faster engine (e.g.
incremental inference that recomputes only the changed region of each layer) registers itself
with :func:`register_occlusion_engine` and must return the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from deconv.model_state import StopForward

__all__ = ["OccludedBatch", "evaluate_occluded", "register_occlusion_engine",
           "occlusion_methods", "occlude_batch", "capture_layer_output"]


@dataclass(frozen=True)
class OccludedBatch:
    """What one batch of occluder positions gives.

    Attributes:
        output (torch.Tensor | None): the model's outputs ``[B, ...]`` (logits for a
            classifier), or None when not asked for.
        layer_totals (torch.Tensor | None): for the requested layer, each feature map summed
            over space, ``[B, C]``; None when no layer was asked for.
    """

    output: torch.Tensor | None
    layer_totals: torch.Tensor | None


# Engine signature: (module, image [C,H,W], fill [C,H,W], boxes long [B,4], layer name | None,
# need_output) -> OccludedBatch.
Engine = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, "str | None", bool],
                  OccludedBatch]
_ENGINES: dict[str, Engine] = {}


def register_occlusion_engine(name: str) -> Callable[[Engine], Engine]:
    """Decorator adding an engine under ``name`` (the ``method=`` of :func:`occlusion_sweep`)."""

    def wrap(engine: Engine) -> Engine:
        if name in _ENGINES:
            raise ValueError(f"occlusion engine {name!r} is already registered")
        _ENGINES[name] = engine
        return engine

    return wrap


def occlusion_methods() -> list[str]:
    """Names of the registered occlusion engines."""
    return list(_ENGINES)


def evaluate_occluded(module: nn.Module, image: torch.Tensor, fill: torch.Tensor,
                      boxes: torch.Tensor, *, layer: str | None = None, need_output: bool = True,
                      method: str = "naive") -> OccludedBatch:
    """Run ``module`` on ``image`` occluded by each window of ``boxes``.

    Args:
        module (nn.Module): the network (not modified).
        image (torch.Tensor): model input ``[C, H, W]`` on the module's device and dtype.
        fill (torch.Tensor): replacement image ``[C, H, W]`` (see :mod:`deconv.occlusion.fills`).
        boxes (torch.Tensor): long ``[B, 4]`` windows ``(y0, y1, x0, x1)``, end exclusive.
        layer (str | None): ``named_modules()`` name whose output's feature maps to total.
        need_output (bool): also return the network output (False lets an engine stop early).
        method (str): engine name, one of :func:`occlusion_methods`.

    Returns:
        OccludedBatch: outputs and/or layer totals, one row per box.
    """
    if method not in _ENGINES:
        raise ValueError(f"unknown occlusion method {method!r}; choose one of "
                         f"{occlusion_methods()}")
    if layer is None and not need_output:
        raise ValueError("nothing to compute: ask for the output, a layer, or both")
    return _ENGINES[method](module, image, fill, boxes, layer, need_output)


def occlude_batch(image: torch.Tensor, fill: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """The occluded images ``[B, C, H, W]``: ``fill`` inside each window, ``image`` outside."""
    batch = image.unsqueeze(0).repeat(len(boxes), 1, 1, 1)
    for i, (y0, y1, x0, x1) in enumerate(boxes.tolist()):
        batch[i, :, y0:y1, x0:x1] = fill[:, y0:y1, x0:x1]
    return batch


def _totals(output: torch.Tensor) -> torch.Tensor:
    """Sum every feature map of a layer output over its spatial dimensions -> ``[B, C]``."""
    if not isinstance(output, torch.Tensor) or output.ndim < 2:
        raise TypeError("the feature layer must output a tensor [B, C, ...]; got "
                        f"{type(output).__name__} of shape {getattr(output, 'shape', None)}")
    return output.flatten(2).sum(dim=2) if output.ndim > 2 else output.clone()


@torch.no_grad()
def _run_with_layer(module: nn.Module, batch: torch.Tensor, layer: str | None,
                    need_output: bool, reduce: Callable[[torch.Tensor], torch.Tensor] = _totals
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Forward ``batch``; return (output or None, ``reduce(layer output)`` or None)."""
    captured: list[torch.Tensor] = []
    handle = None
    if layer is not None:
        def hook(_module, _inputs, output):
            captured.append(reduce(output))  # reduce now: an inplace op may change it later
            if not need_output:
                raise StopForward

        handle = module.get_submodule(layer).register_forward_hook(hook)
    try:
        try:
            output = module(batch)
        except StopForward:
            output = None
    finally:
        if handle is not None:
            handle.remove()
    if layer is not None and not captured:
        raise RuntimeError(f"layer {layer!r} was not run by the model's forward; pick a layer "
                           "that its forward() uses")
    return (output if need_output else None), (captured[0] if captured else None)


@register_occlusion_engine("naive")
def _naive_engine(module: nn.Module, image: torch.Tensor, fill: torch.Tensor, boxes: torch.Tensor,
                  layer: str | None, need_output: bool) -> OccludedBatch:
    """Build every occluded image and run the whole network on the batch."""
    output, totals = _run_with_layer(module, occlude_batch(image, fill, boxes), layer, need_output)
    return OccludedBatch(output, totals)


def capture_layer_output(module: nn.Module, batch: torch.Tensor, layer: str | None
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Forward ``batch``; return ``(output, copy of the layer's output or None)``; no hook left."""
    output, captured = _run_with_layer(module, batch, layer, True, reduce=lambda t: t.clone())
    return output, captured
