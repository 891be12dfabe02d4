"""Which layer Grad-CAM looks at when none is given: the rectified output of the last conv.

Rule (Selvaraju et al. 2017 use "the last convolutional layer"): run the model once on a small
input with a forward hook on every leaf module, find the last ``nn.Conv2d`` executed, then
follow the element-wise modules executed right after it (batch-norm, activations, dropout) as
long as they keep its output shape; the last of them is the layer. So:

* torchvision VGG16: ``features.28`` (conv) -> ``features.29`` (its ReLU);
* efficientnet-lite0: ``head.conv`` -> ``head.bn`` -> ``head.act`` (ReLU6), 7 x 7 x 1280;
* ZFNet: the ReLU after conv5.
"""

from __future__ import annotations

import torch
from torch import nn

from deconv.errors import InvalidArgumentError

__all__ = ["last_conv_layer", "ELEMENTWISE"]

#: Module types that keep the shape and act element-wise (followed after the last conv).
ELEMENTWISE = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.GELU,
               nn.Hardswish, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Dropout, nn.Dropout2d,
               nn.Identity)


def last_conv_layer(model: nn.Module, image_shape: tuple[int, int, int] = (3, 224, 224)) -> str:
    """Name of the layer Grad-CAM uses by default (see the module docstring).

    Args:
        model (nn.Module): the network (not changed; one forward pass without gradients).
        image_shape (tuple[int, int, int]): ``(C, H, W)`` of one input image.

    Returns:
        str: a ``named_modules()`` name.

    Raises:
        ValueError: the model runs no ``nn.Conv2d``; pass ``layer=`` explicitly.
    """
    order: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    handles = []

    def record(name: str):
        def hook(module: nn.Module, _inputs, output) -> None:
            if isinstance(output, torch.Tensor):
                order.append((name, module, tuple(output.shape)))
        return hook

    try:
        for name, module in model.named_modules():
            if name and not list(module.children()):
                handles.append(module.register_forward_hook(record(name)))
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        dtype = parameter.dtype if parameter is not None else torch.float32
        with torch.no_grad():
            model(torch.zeros(1, *image_shape, device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
    convs = [i for i, (_, module, _) in enumerate(order) if isinstance(module, nn.Conv2d)]
    if not convs:
        raise InvalidArgumentError(
            "the model runs no nn.Conv2d, so Grad-CAM has no default layer; pass "
            "layer='<module name>' (a layer with a [N, C, h, w] output)")
    index = convs[-1]
    shape = order[index][2]
    while (index + 1 < len(order) and isinstance(order[index + 1][1], ELEMENTWISE)
           and order[index + 1][2] == shape):
        index += 1
    return order[index][0]
