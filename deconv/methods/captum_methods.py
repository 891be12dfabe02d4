"""captum's attribution methods behind the registry's common call.

Each wrapper returns captum's attributions for the target logit, ``[N, C, H, W]`` of the
input's size; :func:`deconv.methods.attribute` then applies the documented channel reduction.

Caveats (stated where users read them):

* captum's ``Deconvolution``, ``GuidedBackprop`` and ``GuidedGradCam`` change the backward pass
  of ``nn.ReLU`` **modules only**. A functional ``F.relu``/``torch.relu`` and any other
  activation module (``nn.ReLU6``, ``nn.SiLU``, ...) keep their ordinary gradient. On
  efficientnet-lite0, whose activations are all ``nn.ReLU6``, captum's Deconvolution is
  therefore exactly the plain gradient and GuidedBackprop is the plain gradient too (times the
  Grad-CAM map for GuidedGradCam). A ReLU module called twice (ResNet) shares one stored
  gradient per device in captum's hook, so the override is unreliable there.
* In-place ReLUs (torchvision) corrupt captum's tensor hooks; the registry switches every
  ``inplace`` flag off while a method runs and restores it afterwards.
* Grad-CAM uses :func:`deconv.methods.gradcam_layer.last_conv_layer` unless ``layer=`` is given
  and is upsampled bilinearly to the image size; ReLU is applied to the map (as in the paper).
* Integrated gradients and occlusion use the all-zero *normalized* image as baseline / fill,
  i.e. the model's mean colour (grey), not black.
* Occlusion scores the softmax probability of the target (as the paper's Fig. 7(d)), so the
  map is the probability drop averaged over the windows that cover each pixel.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from deconv.errors import InvalidArgumentError
from deconv.layers import resolve_layer
from deconv.methods.gradcam_layer import last_conv_layer
from deconv.methods.registry import register_method

__all__ = ["saliency", "input_x_gradient", "deconvolution", "guided_backprop",
           "integrated_gradients", "occlusion", "layer_gradcam", "guided_gradcam",
           "gradcam_layer_of"]


@contextmanager
def _no_relu_hook_warning() -> Iterator[None]:
    """Silence captum's notice that it sets (and will remove) backward hooks on ReLUs."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations")
        yield


def _needs_grad(images: torch.Tensor) -> torch.Tensor:
    """The registry's private copy of the images, marked as needing a gradient (captum warns
    otherwise)."""
    return images.requires_grad_(True)


def gradcam_layer_of(model: nn.Module, images: torch.Tensor, layer: str | None) -> nn.Module:
    """The module Grad-CAM uses: ``layer`` resolved by name, or the last conv's rectified output."""
    name = (resolve_layer(model, layer) if layer is not None
            else last_conv_layer(model, tuple(images.shape[1:])))
    return model.get_submodule(name)


@register_method("captum-saliency", family="captum", reduction="abs_max",
                 description="gradient of the target logit (Simonyan et al. 2013), captum Saliency")
def saliency(model: nn.Module, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Signed gradient of the target logit w.r.t. the pixels (``abs`` is left to the reduction)."""
    from captum.attr import Saliency

    return Saliency(model).attribute(_needs_grad(images), target=target, abs=False)


@register_method("captum-input-x-gradient", family="captum", reduction="sum", signed=True,
                 description="input times gradient (Shrikumar et al. 2016), captum InputXGradient")
def input_x_gradient(model: nn.Module, images: torch.Tensor, target: torch.Tensor
                     ) -> torch.Tensor:
    """Normalized input times the gradient of the target logit."""
    from captum.attr import InputXGradient

    return InputXGradient(model).attribute(_needs_grad(images), target=target)


@register_method("captum-deconvolution", family="captum", reduction="abs_max",
                 description="captum Deconvolution: gradient with nn.ReLU backward rectified "
                             "(other activations untouched)")
def deconvolution(model: nn.Module, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """captum's Deconvolution (Zeiler & Fergus 2014 as a gradient rule on ``nn.ReLU`` modules)."""
    from captum.attr import Deconvolution

    with _no_relu_hook_warning():
        return Deconvolution(model).attribute(_needs_grad(images), target=target)


@register_method("captum-guided-backprop", family="captum", reduction="abs_max",
                 description="captum GuidedBackprop (Springenberg et al. 2014) on nn.ReLU modules")
def guided_backprop(model: nn.Module, images: torch.Tensor, target: torch.Tensor
                    ) -> torch.Tensor:
    """captum's GuidedBackprop: forward mask and rectified backward signal at ``nn.ReLU``."""
    from captum.attr import GuidedBackprop

    with _no_relu_hook_warning():
        return GuidedBackprop(model).attribute(_needs_grad(images), target=target)


@register_method("captum-integrated-gradients", family="captum", reduction="sum", signed=True,
                 description="integrated gradients (Sundararajan et al. 2017) from the mean-colour "
                             "image, captum IntegratedGradients")
def integrated_gradients(model: nn.Module, images: torch.Tensor, target: torch.Tensor,
                         n_steps: int = 32, internal_batch_size: int | None = None
                         ) -> torch.Tensor:
    """Integrated gradients from the all-zero normalized image (the mean colour).

    Args:
        n_steps (int): points of the Gauss-Legendre rule along the path (captum's default 50;
            32 here, 16 in quick runs: the completeness error is reported by captum's
            ``return_convergence_delta`` if you need it).
        internal_batch_size (int | None): images per forward; ``n_steps`` by default.
    """
    from captum.attr import IntegratedGradients

    if n_steps < 1:
        raise InvalidArgumentError(f"n_steps must be >= 1, got {n_steps}")
    return IntegratedGradients(model).attribute(
        _needs_grad(images), baselines=0.0, target=target, n_steps=n_steps,
        internal_batch_size=internal_batch_size or n_steps)


class _Probability(nn.Module):
    """Softmax probabilities of a classifier (the score occlusion tracks)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


@register_method("captum-occlusion", family="captum", reduction="mean",
                 description="captum Occlusion: drop of the target probability under a sliding "
                             "mean-colour square, averaged over the squares covering each pixel")
def occlusion(model: nn.Module, images: torch.Tensor, target: torch.Tensor, patch: int = 32,
              stride: int = 16, fill: float = 0.0, batch_size: int = 64) -> torch.Tensor:
    """captum's Occlusion on the softmax probability of the target.

    Args:
        patch (int): side of the square in pixels (all three channels at once).
        stride (int): step between squares.
        fill (float): value of the square in normalized space (0 = the model's mean colour).
        batch_size (int): occluded images per forward (captum's ``perturbations_per_eval``).
    """
    from captum.attr import Occlusion

    if patch < 1 or stride < 1:
        raise InvalidArgumentError(
            f"patch and stride must be >= 1, got patch={patch}, stride={stride}")
    channels = images.shape[1]
    with torch.no_grad():
        return Occlusion(_Probability(model)).attribute(
            images, sliding_window_shapes=(channels, patch, patch),
            strides=(channels, stride, stride), baselines=fill, target=target,
            perturbations_per_eval=batch_size)


@register_method("captum-layer-gradcam", family="captum", reduction="mean",
                 description="Grad-CAM (Selvaraju et al. 2017) at the last conv layer, upsampled "
                             "bilinearly, captum LayerGradCam")
def layer_gradcam(model: nn.Module, images: torch.Tensor, target: torch.Tensor,
                  layer: str | None = None) -> torch.Tensor:
    """Grad-CAM of ``layer`` (default: :func:`last_conv_layer`), ReLU'd, upsampled to the image.

    Args:
        layer (str | None): a ``named_modules()`` name (or paper layer number) whose output is
            ``[N, C, h, w]``.
    """
    from captum.attr import LayerAttribution, LayerGradCam

    module = gradcam_layer_of(model, images, layer)
    cam = LayerGradCam(model, module).attribute(_needs_grad(images), target=target,
                                                relu_attributions=True)
    return LayerAttribution.interpolate(cam, tuple(images.shape[-2:]),
                                        interpolate_mode="bilinear")


@register_method("captum-guided-gradcam", family="captum", reduction="abs_max",
                 description="guided backprop times upsampled Grad-CAM, captum GuidedGradCam")
def guided_gradcam(model: nn.Module, images: torch.Tensor, target: torch.Tensor,
                   layer: str | None = None) -> torch.Tensor:
    """captum's GuidedGradCam at ``layer`` (default: :func:`last_conv_layer`), bilinear upsampling.

    Args:
        layer (str | None): as for :func:`layer_gradcam`.
    """
    from captum.attr import GuidedGradCam

    module = gradcam_layer_of(model, images, layer)
    with _no_relu_hook_warning():
        return GuidedGradCam(model, module).attribute(_needs_grad(images), target=target,
                                                      interpolate_mode="bilinear")


