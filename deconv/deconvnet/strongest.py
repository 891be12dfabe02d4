"""The strongest units of a layer on one image, projected to pixels (``deconv project``)."""

from __future__ import annotations

import torch

from deconv.deconvnet.choose import deconvnet_for
from deconv.errors import InvalidArgumentError

__all__ = ["project_strongest"]


def project_strongest(model, image: torch.Tensor, layer: str | int, top: int = 1,
                      channel: int | None = None, seed: str = "activation",
                      engine: str = "auto") -> dict:
    """Find the ``top`` strongest units of ``layer`` on one image and project them.

    Args:
        model (LoadedModel | nn.Module): the model.
        image (torch.Tensor): one preprocessed image [3, H, W].
        layer (str | int): module name or paper layer number.
        top (int): how many units (at least 1).
        channel (int | None): restrict to one feature map.
        seed (str): ``"activation"`` (the paper) or ``"unit"``.
        engine (str): ``"auto"``, ``"explicit"`` or ``"generic"``; see
            :func:`deconv.deconvnet.deconvnet_for`.

    Returns:
        dict: ``layer`` (module name), ``engine`` (class name), ``units`` [k, 4], ``values``
        [k], ``projections`` [k, 3, H, W].

    Raises:
        ValueError: ``top`` below 1, or an unknown engine.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise InvalidArgumentError(f"top must be a positive int, got {top!r}")
    projector = deconvnet_for(model, layer, engine)
    param = next(projector.module.parameters(), None)
    batch = image[None] if param is None else image[None].to(param.device)
    found = projector.top_units(batch, layer, top, channel=channel)
    projections = projector.project(batch, layer, found.units, seed=seed)
    return {"layer": projector.resolve(layer), "engine": type(projector).__name__,
            "units": found.units, "values": found.values, "projections": projections}
