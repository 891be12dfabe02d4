"""The model card of an atlas: each layer's type, output shape, receptive field, parameters,
and how the layers' channels are wired (which filters feed which feature maps)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import torch
from torch import nn

from deconv.errors import InvalidArgumentError
from deconv.layers import capture_outputs, module_of, paper_layers_of, resolve_layer

__all__ = ["LayerCard", "model_card", "model_fingerprint", "feeding_conv", "order_layers",
           "strongest_links"]


@dataclass
class LayerCard:
    """One layer of the model card.

    Attributes:
        name (str): ``named_modules()`` name.
        paper (int | None): the paper layer number, when the zoo model has one.
        type (str): the module's class.
        output_shape (list[int]): ``[C, H, W]`` (or ``[F]``) for one input image.
        channels (int): feature maps.
        receptive_field (list[int] | None): ``[h, w]`` in input pixels (None if unknown).
        jump (list[int] | None): input pixels between neighbouring units.
        parameters (int): parameters of the modules between the previous atlas layer
            (exclusive) and this one (inclusive), in module order.
        cumulative_parameters (int): parameters of every module up to this layer.
        feeding_conv (str | None): the last ``Conv2d`` at or before the layer (its filters make
            the feature maps), or None.
    """

    name: str
    paper: int | None
    type: str
    output_shape: list[int]
    channels: int
    receptive_field: list[int] | None
    jump: list[int] | None
    parameters: int
    cumulative_parameters: int
    feeding_conv: str | None

    def to_dict(self) -> dict:
        """A JSON-able dict."""
        return asdict(self)


def order_layers(model, layers) -> list[str]:
    """Resolve ``layers`` (names or paper numbers) and sort them in ``named_modules()`` order."""
    names = list(dict.fromkeys(resolve_layer(model, layer) for layer in layers))
    if not names:
        raise InvalidArgumentError("give at least one layer for the atlas")
    order = {name: i for i, (name, _) in enumerate(module_of(model).named_modules())}
    return sorted(names, key=order.__getitem__)


def feeding_conv(model, layer: str) -> tuple[str, nn.Conv2d] | None:
    """The last ``nn.Conv2d`` at or before ``layer`` in module order (None if there is none)."""
    found = None
    for name, module in module_of(model).named_modules():
        if isinstance(module, nn.Conv2d):
            found = (name, module)
        if name == layer:
            return found
    return None


def model_fingerprint(model) -> str:
    """SHA-256 of the network's class and every parameter and buffer (names, shapes, bytes)."""
    module = module_of(model)
    digest = hashlib.sha256(type(module).__qualname__.encode())
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16
                      else t.float().numpy().tobytes())
    return digest.hexdigest()


def _leaf_parameters(module: nn.Module) -> dict[str, int]:
    return {name: sum(p.numel() for p in m.parameters(recurse=False))
            for name, m in module.named_modules()}


def model_card(model, layers: list[str], input_size: tuple[int, int]) -> list[LayerCard]:
    """A :class:`LayerCard` per layer (``layers`` already resolved and ordered).

    Args:
        model (nn.Module | LoadedModel): the network.
        layers (list[str]): module names in module order (:func:`order_layers`).
        input_size (tuple[int, int]): ``(H, W)`` of the model inputs the atlas uses.
    """
    from deconv.receptive_field import ReceptiveFieldError, receptive_field

    module = module_of(model)
    param = next(module.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    probe = torch.zeros(1, 3, *input_size, dtype=dtype, device=device)
    outputs, _ = capture_outputs(model, probe, layers, flatten=False)  # eval mode, restored
    paper = {name: number for number, name in paper_layers_of(model).items()}
    own = _leaf_parameters(module)
    order = [name for name, _ in module.named_modules()]
    cards, previous, total = [], -1, 0
    for name in layers:
        at = order.index(name)
        block = sum(own[n] for n in order[previous + 1:at + 1])
        total = sum(own[n] for n in order[:at + 1])
        try:
            field = receptive_field(model, name, input_size)
            size, jump = list(field.size), list(field.jump)
        except (ReceptiveFieldError, ValueError):  # a field that is no regular grid
            size = jump = None
        shape = list(outputs[name].shape[1:])
        conv = feeding_conv(model, name)
        cards.append(LayerCard(name, paper.get(name), type(module.get_submodule(name)).__name__,
                               shape, int(shape[0]), size, jump, int(block), int(total),
                               conv[0] if conv else None))
        previous = at
    return cards


def strongest_links(model, cards: list[LayerCard], count: int = 5
                    ) -> dict[str, dict[str, list[list]]]:
    """For each atlas layer, per channel the strongest-weight channels of its neighbours.

    ``"previous"``: channels of the previous atlas layer with the largest weight strength into
    channel ``c``; ``"next"``: channels ``j`` of the next atlas layer that ``c`` feeds most.
    Through one convolution the strength of ``in -> out`` is ``sum |w[out, in]|`` over the
    kernel; through a plain chain of convolutions between the two layers (VGG's blocks: each
    conv's input channels are the previous conv's outputs, ``groups=1``) it is the summed
    strength of every path, the product of the convolutions' ``[out, in]`` strength matrices
    (``"through"`` records how many). Layers with anything else between them (a branch, a
    grouped conv, mismatched channels) are not linked.

    Returns:
        dict[str, dict[str, list[list]]]: layer -> {"previous" | "next": per channel a list
        of ``[channel, strength]`` pairs, strongest first; ``"through_previous"`` /
        ``"through_next"``: the number of convolutions between}.
    """
    module = module_of(model)
    named = list(module.named_modules())
    order = {name: i for i, (name, _) in enumerate(named)}
    links: dict[str, dict[str, list[list]]] = {c.name: {} for c in cards}
    for before, after in zip(cards, cards[1:]):
        conv_name = after.feeding_conv
        if conv_name is None or not order[before.name] < order[conv_name] <= order[after.name]:
            continue
        convs = [m for name, m in named if order[before.name] < order[name] <= order[conv_name]
                 and isinstance(m, nn.Conv2d)]
        channels = before.channels
        strength = None
        for conv in convs:
            if conv.groups != 1 or conv.in_channels != channels:
                strength = None
                break
            step = conv.weight.detach().abs().flatten(2).sum(2).double().cpu()  # [out, in]
            strength = step if strength is None else step @ strength
            channels = conv.out_channels
        if strength is None or channels != after.channels:
            continue
        strength = strength / strength.max().clamp_min(1e-300) if len(convs) > 1 else strength
        n_prev = min(count, strength.shape[1])
        n_next = min(count, strength.shape[0])
        into = strength.topk(n_prev, dim=1)
        out_of = strength.t().topk(n_next, dim=1)
        links[after.name]["previous"] = [
            [[int(j), round(float(v), 6)] for v, j in zip(vals, idx)]
            for vals, idx in zip(into.values, into.indices)]
        links[before.name]["next"] = [
            [[int(j), round(float(v), 6)] for v, j in zip(vals, idx)]
            for vals, idx in zip(out_of.values, out_of.indices)]
        links[after.name]["through_previous"] = len(convs)
        links[before.name]["through_next"] = len(convs)
    return links
