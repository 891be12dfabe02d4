"""Projections for a model that sees a grey picture copied into its three input channels.

A grey image ``g`` given as RGB ``(g, g, g)`` (e.g. Fashion-MNIST through
:func:`deconv.datasets.fashion_batch_transform`) has one pixel per position, so the projection
that lives in the picture's space is the sum of the three channel projections (the chain rule
through the copy). Shown as RGB, the three channel projections differ (conv1's filters weigh the
copies differently) and paint colours that no input could have.
"""

from __future__ import annotations

import torch

__all__ = ["GreyInputProjections"]


class GreyInputProjections:
    """Wrap a deconvnet engine so projections are summed over the input channels.

    The result keeps the engine's shape ``[K, C, H, W]``: the sum is repeated in every channel,
    so display code for RGB projections shows it as grey.

    Args:
        engine (Deconvnet | GenericDeconvnet): e.g. ``deconvnet_for(model, layer)``.
    """

    def __init__(self, engine):
        self.engine = engine
        self.module = engine.module

    @staticmethod
    def _grey(projection: torch.Tensor) -> torch.Tensor:
        return projection.sum(dim=1, keepdim=True).expand_as(projection).contiguous()

    def project(self, images: torch.Tensor, layer, units, **kwargs) -> torch.Tensor:
        """The engine's ``project``, summed over the input channels."""
        return self._grey(self.engine.project(images, layer, units, **kwargs))

    def project_feature_map(self, images: torch.Tensor, layer, channel, **kwargs
                            ) -> torch.Tensor:
        """The engine's ``project_feature_map``, summed over the input channels."""
        return self._grey(self.engine.project_feature_map(images, layer, channel, **kwargs))
