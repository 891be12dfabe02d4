"""The naive occlusion engine: build every occluded image and run the whole network on them.

It is the reference every faster engine must match (same numbers, to floating-point rounding)
and the fall-back for models the others do not support. See :mod:`deconv.occlusion.engines`
for the engine interface.
"""

from __future__ import annotations

import torch
from torch import nn

from deconv._deprecation import warn_deprecated
from deconv.errors import InvalidArgumentError, InvalidTypeError
from deconv.layers import check_tapped, resolve_layer
from deconv.model_state import StopForward, eval_mode, registered_hooks
from deconv.occlusion.engine_base import OcclusionEngine
from deconv.occlusion.fills import occlude_images
from deconv.occlusion.outputs import OcclusionOutputs, reduce_capture

__all__ = ["NaiveOcclusion", "naive_occlusion_outputs", "capture_layer_output", "layer_name"]


def layer_name(model, layer: str | int | None, capture: str | None = None) -> str | None:
    """The module name of an engine's ``layer`` (or of the deprecated ``capture=``).

    Args:
        model (nn.Module | LoadedModel): the network.
        layer (str | int | None): module name or paper layer number; None: no layer.
        capture (str | None): the old name of ``layer`` (warns).

    Raises:
        UnknownLayerError: no such layer (the message lists valid names).
        TypeError: both ``layer`` and ``capture``.
    """
    if capture is not None:
        warn_deprecated("capture=", "pass layer= instead (the same module name)", stacklevel=4)
        if layer is not None:
            raise InvalidTypeError("give layer= or the old capture=, not both")
        layer = capture
    return None if layer is None else resolve_layer(model, layer)


@torch.no_grad()
def forward_capturing(module: nn.Module, batch: torch.Tensor, capture: str | None,
                      reduce: str | None = "sum", need_output: bool = True
                      ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Forward ``batch``; return (output or None, layer ``capture`` reduced, or None).

    With ``need_output=False`` the forward stops at the layer
    (:class:`~deconv.model_state.StopForward`). The hook is removed even if the forward raises.

    Raises:
        ValueError: a layer the model's forward does not run.
    """
    seen: list[torch.Tensor] = []

    def hook(module, _inputs, output):
        # the sweep's full forward of the base image finds a reused module before any window
        check_tapped(capture, module, output, bool(seen))
        seen.append(reduce_capture(output, reduce))  # now: an inplace op may change it later
        if not need_output:
            raise StopForward

    handles = [] if capture is None else [
        module.get_submodule(capture).register_forward_hook(hook)]
    with registered_hooks(handles), eval_mode(module):  # the fall-back also serves training-
        try:                                             # mode models: BN statistics untouched
            output = module(batch)
        except StopForward:
            output = None
    if capture is not None and not seen:
        raise InvalidArgumentError(
            f"layer {capture!r} is not run by the model's forward; pick a layer "
            "that its forward() uses")
    return (output if need_output else None), (seen[0] if seen else None)


def capture_layer_output(module: nn.Module, batch: torch.Tensor, layer: str | None
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Forward ``batch``; return ``(output, copy of the layer's output or None)``; no hook left."""
    return forward_capturing(module, batch, layer, reduce=None)


class NaiveOcclusion(OcclusionEngine):
    """Model outputs on occluded copies of one image: a batched forward of the occluded images.

    An engine for one sweep (see :mod:`deconv.occlusion.engines`): build it, enter it, call
    :meth:`outputs` for batches of windows, leave it. It keeps nothing but its arguments.

    Args:
        model (nn.Module | LoadedModel): the network, in eval mode (not modified).
        image (torch.Tensor): model input ``[C, H, W]`` (or ``[1, C, H, W]``) on the model's
            device and dtype.
        fill (float | torch.Tensor): what the occluder shows in model-input space (see
            :func:`deconv.occlusion.fills.make_fill`: a number, ``[C]`` or ``[C, H, W]``).
        layer (str | int | None): a layer (module name or paper layer number) whose output to
            return too (``captured``).
        reduce (str | None): ``"sum"``: the layer's output summed over space per feature map;
            None: the whole output.
        batch_size (int): occluded images per forward.
        need_output (bool): False: stop each forward at the layer (``output`` None).
        capture (str | None): deprecated name of ``layer``.

    Raises:
        ValueError: bad image / fill shapes, unknown layer, bad ``reduce`` or ``batch_size``,
            or ``need_output=False`` without a layer.
    """

    def __init__(self, model, image: torch.Tensor, fill=0.0, *, layer: str | int | None = None,
                 reduce: str | None = "sum", batch_size: int = 32, need_output: bool = True,
                 capture: str | None = None):
        layer = layer_name(model, layer, capture)
        if layer is None and not need_output:
            raise InvalidArgumentError("nothing to compute: ask for the output, a layer, or both")
        self._setup(model, image, fill, layer=layer, reduce=reduce, batch_size=batch_size,
                    need_output=need_output)

    @staticmethod
    def supports(model) -> tuple[bool, str]:
        """Every model: ``(True, "")``."""
        return True, ""

    def _outputs(self, boxes: torch.Tensor) -> OcclusionOutputs:
        """One batched forward of the occluded images per ``batch_size`` windows."""
        outputs, captured = [], []
        for start in range(0, len(boxes), self.batch_size):
            batch = occlude_images(self.image, self.fill, boxes[start:start + self.batch_size])
            out, cap = forward_capturing(self.module, batch, self.layer, self.reduce,
                                         self.need_output)
            outputs.append(out)
            captured.append(cap)
        return OcclusionOutputs(torch.cat(outputs) if self.need_output else None,
                                torch.cat(captured) if self.layer is not None else None)


def naive_occlusion_outputs(model, image: torch.Tensor, fill, boxes, *,
                            layer: str | int | None = None, reduce: str | None = "sum",
                            batch_size: int = 32, capture: str | None = None
                            ) -> OcclusionOutputs:
    """The reference outputs: :class:`NaiveOcclusion` for ``boxes`` in one call.

    Args:
        model (nn.Module | LoadedModel): the network (eval mode; not modified).
        image (torch.Tensor): model input ``[C, H, W]``.
        fill (float | torch.Tensor): fill value(s), see :func:`deconv.occlusion.make_fill`.
        boxes (torch.Tensor): long ``[P, 4]`` occluder windows ``(y0, y1, x0, x1)``.
        layer (str | int | None): a layer (module name or paper layer number) whose output
            to return too.
        reduce (str | None): ``"sum"`` (per-channel spatial sum) or None (whole output).
        batch_size (int): occluded images per forward.
        capture (str | None): deprecated name of ``layer``.

    Returns:
        OcclusionOutputs: outputs (and captured layer) for every box.
    """
    with NaiveOcclusion(model, image, fill, layer=layer_name(model, layer, capture),
                        reduce=reduce, batch_size=batch_size) as engine:
        return engine.outputs(boxes)
