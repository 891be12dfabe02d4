"""This toolkit's methods behind the registry's common call: deconvnet, guided backprop, occlusion.

* ``"deconvnet"``: :class:`deconv.deconvnet.GenericDeconvnet` with ``rule="deconvnet"``
  (Zeiler & Fergus 2014), which rectifies the backward signal at *every* rectifier (``nn.ReLU``
  inplace or reused, ``F.relu``, ``nn.ReLU6``) and, as the paper does, passes the signal through
  batch-norm / LRN unchanged. By default it projects the target class logit seeded with 1 (the
  gradient convention, so it is comparable with captum's Deconvolution); ``unit=`` projects a
  hidden unit or a whole feature map instead.
* ``"guided-backprop"``: the same engine with ``rule="guided"`` (Springenberg et al. 2014):
  forward mask and rectified backward signal at every rectifier, ``nn.ReLU6`` included, which
  captum's GuidedBackprop leaves untouched.
* ``"occlusion"``: :func:`deconv.occlusion.occlusion_sweep` (Zeiler & Fergus 2014, Fig. 7(d)):
  the drop of the target's softmax probability when a square of the model's mean colour covers
  the pixel, averaged over the squares covering it (the same convention as captum's Occlusion).

Both packages are imported when a method runs, so the registry lists them even where they are
being changed.
"""

from __future__ import annotations

import torch
from torch import nn

from deconv.errors import InvalidArgumentError
from deconv.methods.registry import register_method

__all__ = ["deconvnet", "guided_backprop", "occlusion"]


@register_method("deconvnet", family="ours", reduction="abs_max",
                 description="our deconvnet (Zeiler & Fergus 2014) of the target logit, any "
                             "architecture (ReLU6, functional and inplace ReLU)")
def deconvnet(model: nn.Module, images: torch.Tensor, target: torch.Tensor,
              unit: tuple | None = None, skip_normalization: bool | None = None,
              chunk_size: int = 32) -> torch.Tensor:
    """Project the target logit (or a unit) to pixels with the deconvnet rule.

    Args:
        unit (tuple | None): None projects the class logit ``target`` (seeded with 1). A pair
            ``(layer, channel)`` projects that whole feature map of each image, a 4-tuple
            ``(layer, channel, y, x)`` that single unit of each image; both seeded with the
            activation, as in the paper; ``target`` is then ignored.
        skip_normalization (bool | None): identity backward through batch-norm / LRN (the
            paper's choice, the default for the deconvnet rule); False back-propagates through
            them like captum.
        chunk_size (int): images per backward pass.

    Returns:
        torch.Tensor: the projections ``[N, C, H, W]``.
    """
    from deconv.deconvnet import GenericDeconvnet

    engine = GenericDeconvnet(model, rule="deconvnet", skip_normalization=skip_normalization)
    if unit is None:
        return engine.attribute(images, target, chunk_size=chunk_size)
    if not isinstance(unit, tuple) or len(unit) not in (2, 4):
        raise InvalidArgumentError(
            f"unit must be (layer, channel) or (layer, channel, y, x), got {unit!r}")
    layer, channel = unit[0], int(unit[1])
    if len(unit) == 2:
        return engine.project_feature_map(images, layer, channel, chunk_size=chunk_size)
    n = images.shape[0]
    rows = torch.tensor([[i, channel, int(unit[2]), int(unit[3])] for i in range(n)])
    return engine.project(images, layer, rows, chunk_size=chunk_size)


@register_method("guided-backprop", family="ours", reduction="abs_max",
                 description="our guided backprop (Springenberg et al. 2014) of the target logit, "
                             "any architecture (ReLU6, functional and inplace ReLU)")
def guided_backprop(model: nn.Module, images: torch.Tensor, target: torch.Tensor,
                    chunk_size: int = 32) -> torch.Tensor:
    """Guided backprop of the target logit (seeded with 1) with the generic engine.

    Args:
        chunk_size (int): images per backward pass.

    Returns:
        torch.Tensor: ``[N, C, H, W]``.
    """
    from deconv.deconvnet import GenericDeconvnet

    return GenericDeconvnet(model, rule="guided").attribute(images, target,
                                                            chunk_size=chunk_size)


@register_method("occlusion", family="ours", reduction="mean",
                 description="our occlusion sweep (Zeiler & Fergus 2014 Fig. 7): drop of the "
                             "target probability under a mean-colour square")
def occlusion(model: nn.Module, images: torch.Tensor, target: torch.Tensor, patch: int = 32,
              stride: int = 16, fill: str | float = "mean", batch_size: int = 64,
              engine: str = "naive") -> torch.Tensor:
    """Per-pixel probability drop of :func:`deconv.occlusion.occlusion_sweep`, one image at a time.

    Args:
        patch (int): side of the square in pixels.
        stride (int): step between squares.
        fill (str | float): what fills the square (``"mean"``: 0 of the normalized input, the
            model's mean colour; see :func:`deconv.occlusion.make_fill`).
        batch_size (int): occluded images per forward.
        engine (str): occlusion engine (:func:`deconv.occlusion.occlusion_engines`).

    Returns:
        torch.Tensor: ``[N, 1, H, W]``; pixels no square covers (none when ``stride <= patch``)
        are 0.
    """
    from deconv.occlusion import occlusion_sweep

    maps = []
    for image, cls in zip(images, target.tolist()):
        result = occlusion_sweep(model, image, patch=patch, stride=stride, fill=fill,
                                 target=int(cls), batch_size=batch_size, engine=engine,
                                 progress=False)
        maps.append(torch.nan_to_num(result.drop_map, nan=0.0).to(images.dtype))
    return torch.stack(maps).unsqueeze(1).to(images.device)
