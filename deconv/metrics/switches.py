"""What a deconvnet map depends on: transplant one image's max-pool switches into another's pass.

On a network of conv / ReLU / max-pool (and LRN, passed through unchanged on the way down, as the
paper does), the deconvnet rule ignores the forward pass at every rectifier (Zeiler & Fergus
2014, Sec. 2.1), so the only thing of the image that reaches the backward pass is where each
max-pool took its maximum (the switches). :func:`transplanted_switches` makes that testable:
inside the ``with`` block, every ``nn.MaxPool2d`` of the model returns its input *read at the
switches recorded on a donor image* instead of its own maxima. Then

    deconvnet(image, switches of donor) == deconvnet(donor)

holds exactly (to rounding) if and only if the map depends on the image through the switches
alone; guided backprop, which also masks by the forward ReLU pattern, does not satisfy it.
:func:`switch_agreement` counts how many switches two images share.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from deconv.errors import InvalidArgumentError
from deconv.model_state import registered_hooks

__all__ = ["record_switches", "transplanted_switches", "switch_agreement"]


def _pools(model: nn.Module) -> list[tuple[str, nn.MaxPool2d]]:
    pools = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.MaxPool2d)]
    if not pools:
        raise InvalidArgumentError(
            "the model has no nn.MaxPool2d: it has no switches to transplant")
    return pools


def _indices(pool: nn.MaxPool2d, x: torch.Tensor) -> torch.Tensor:
    _, idx = F.max_pool2d(x, pool.kernel_size, pool.stride, pool.padding, pool.dilation,
                          ceil_mode=pool.ceil_mode, return_indices=True)
    return idx


@torch.no_grad()
def record_switches(model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The argmax indices (flat per map, as ``max_pool2d(return_indices=True)``) of every pool.

    Args:
        model (nn.Module): the network (hooks are removed afterwards; mode unchanged).
        images (torch.Tensor): its input ``[N, ...]``.

    Returns:
        dict[str, torch.Tensor]: module name -> int64 indices ``[N, C, h, w]``.
    """
    switches: dict[str, torch.Tensor] = {}
    with registered_hooks(pool.register_forward_hook(
            lambda m, inputs, _out, name=name: switches.__setitem__(name, _indices(m, inputs[0])))
            for name, pool in _pools(model)):
        model(images)
    return switches


@contextmanager
def transplanted_switches(model: nn.Module, donor: torch.Tensor) -> Iterator[dict]:
    """Inside the block every max-pool reads its input at the donor images' switches.

    Args:
        model (nn.Module): the network (hooks are added on entry and removed on exit).
        donor (torch.Tensor): the images whose switches are used, one per image that will be run
            inside the block. A forward of ``k`` images inside the block uses the first ``k``
            donors (so a one-image probe works); run the batch whole (a large ``chunk_size``),
            not in chunks, or later chunks get the first chunk's switches.

    Yields:
        dict[str, torch.Tensor]: the donor's switches per pool.
    """
    switches = record_switches(model, donor)

    def hook(module, inputs, output, name):
        x = inputs[0]
        idx = switches[name]
        if x.shape[0] > idx.shape[0]:
            raise InvalidArgumentError(
                f"the donor batch has {idx.shape[0]} images, the input {x.shape[0]}:"
                f" give one donor per image")
        idx = idx[:x.shape[0]]
        return x.flatten(2).gather(2, idx.flatten(2)).view_as(output)

    with registered_hooks(pool.register_forward_hook(
            lambda m, i, o, name=name: hook(m, i, o, name)) for name, pool in _pools(model)):
        yield switches


def switch_agreement(model: nn.Module, images_a: torch.Tensor,
                     images_b: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per pool and image pair, the fraction of switches that are the same in ``a`` and ``b``.

    Returns:
        dict[str, torch.Tensor]: module name -> ``[N]`` fractions in [0, 1].
    """
    a, b = record_switches(model, images_a), record_switches(model, images_b)
    return {name: (a[name] == b[name]).flatten(1).double().mean(dim=1) for name in a}
