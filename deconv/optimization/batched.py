"""Optima of many feature maps of one layer, optimised together in one batch.

One parametrised image per (channel, sign), one forward per step for all of them, stopped at
the layer (:class:`~deconv.optimization.objectives.ActivationCapture` skips the rest of the
network). Every image starts from the same random draw and sees the same transform draws, so
each optimum is the one :func:`deconv.visualize_feature` gives for that channel alone: the
batch only changes how fast they come (tested: batched == one-by-one).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from deconv.errors import InvalidArgumentError
from deconv.layers import resolve_layer
from deconv.optimization.objectives import (
    Objective,
    Tap,
    is_activation_layer,
    redirected_relu,
)
from deconv.optimization.visualize import visualize_feature

__all__ = ["ChannelOptima", "optimize_channels", "optima_batch_objective", "SIGNS"]

SIGNS = ("positive", "negative")


@dataclass
class ChannelOptima:
    """The result of :func:`optimize_channels`.

    Attributes:
        layer (str): module name.
        channels (list[int]): the channels, in the order given.
        signs (tuple[str, ...]): ``"positive"`` and/or ``"negative"``.
        images (torch.Tensor): ``[len(signs), len(channels), 3, H, W]`` pixels in [0, 1].
        values (torch.Tensor): ``[len(signs), len(channels)]`` each image's own objective on
            its final pixels (for ``"negative"``: minus the pre-activation mean).
        seconds (float): wall time of all the optimisation.
        seconds_per_channel (float): ``seconds / len(channels)`` (all signs of one channel).
        settings (dict): JSON-able record of the arguments.
    """

    layer: str
    channels: list[int]
    signs: tuple[str, ...]
    images: torch.Tensor
    values: torch.Tensor
    seconds: float
    seconds_per_channel: float
    settings: dict = field(default_factory=dict)


def optima_batch_objective(layer: str, jobs: Sequence[tuple[str, int]],
                           pre_activation: bool) -> Objective:
    """One objective for a batch whose image ``i`` is the optimum ``jobs[i] = (sign, channel)``.

    The same values as :func:`~deconv.optimization.objectives.optima_objectives` per image
    (positive: the mean of ``redirected_relu(z)`` of an activation layer's pre-activation, or of
    the output; negative: minus the mean of ``z``), computed for the whole batch at once: one
    gather of each image's channel, so the backward pass costs the same as for one objective
    (a per-image slice would add a batch-sized zero tensor per image).

    Args:
        layer (str): module name.
        jobs (Sequence[tuple[str, int]]): ``(sign, channel)`` per image.
        pre_activation (bool): read the module's input (the pre-activation of a ReLU layer).
    """
    tap = Tap(layer, "input" if pre_activation else "output")
    channel_index = torch.tensor([c for _, c in jobs])
    positive = torch.tensor([s == "positive" for s, _ in jobs])

    def fn(t: dict) -> torch.Tensor:
        tensor = t[tap]
        if tensor.shape[0] != len(jobs):
            raise InvalidArgumentError(f"the batch has {tensor.shape[0]} images for "
                                       f"{len(jobs)} optima")
        if int(channel_index.max()) >= tensor.shape[1]:
            raise InvalidArgumentError(f"channel {int(channel_index.max())} out of range: layer "
                                       f"{layer!r} has {tensor.shape[1]} channels")
        rows = torch.arange(len(jobs), device=tensor.device)
        maps = tensor[rows, channel_index.to(tensor.device)].reshape(len(jobs), -1)
        up = (redirected_relu(maps) if pre_activation else maps).mean(1)
        return torch.where(positive.to(tensor.device), up, -maps.mean(1))

    return Objective([tap], fn, f"optima of {len(jobs)} channels of {layer}")


def optimize_channels(model, layer: str | int, channels: Sequence[int], *,
                      signs: Sequence[str] = SIGNS, chunk: int = 128,
                      size: int | tuple[int, int] = 128, steps: int = 128, lr: float = 0.05,
                      parametrization: str = "fourier", decorrelate: bool = True,
                      transforms: Callable | Sequence[Callable] | str | None = "standard",
                      seed: int = 0, normalize: Callable | None = None,
                      device: str | torch.device | None = None, post_activation: bool = False,
                      progress: bool = False) -> ChannelOptima:
    """Positive and/or negative optima of many channels of ``layer``, batched.

    The objectives are those of :func:`~deconv.optimization.objectives.optima_objectives`
    (for an activation layer: the rectified pre-activation's mean, and minus the
    pre-activation's mean). ``chunk`` images (channels x signs) go through the model together.

    Args:
        model (nn.Module | LoadedModel): the network (never changed).
        layer (str | int): module name or paper layer number.
        channels (Sequence[int]): the feature maps.
        signs (Sequence[str]): a subset of ``("positive", "negative")``.
        chunk (int): images optimised in one batch (bounds the memory).
        size, steps, lr, parametrization, decorrelate, transforms, seed, normalize, device:
            as in :func:`deconv.visualize_feature`.
        post_activation (bool): read an activation layer's output, not its pre-activation.
        progress (bool): a tqdm bar over the chunks.

    Returns:
        ChannelOptima: the images and values, sign-major.

    Raises:
        InvalidArgumentError: no channels, an unknown sign or a bad chunk size.
    """
    channels = [int(c) for c in channels]
    signs = tuple(signs)
    if not channels:
        raise InvalidArgumentError("give at least one channel to optimize")
    if not signs or any(s not in SIGNS for s in signs) or len(set(signs)) != len(signs):
        raise InvalidArgumentError(f"signs must be distinct values of {SIGNS}, got {signs}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InvalidArgumentError(f"chunk must be a positive int, got {chunk!r}")
    name = resolve_layer(model, layer)
    jobs = [(s, c) for s in signs for c in channels]
    pre = not post_activation and is_activation_layer(model, name)
    images, values, seconds = [], [], 0.0
    start = time.perf_counter()
    parts = range(0, len(jobs), chunk)
    for begin in tqdm(parts, desc=f"optima {name}", unit="chunk", disable=not progress):
        part = jobs[begin:begin + chunk]
        result = visualize_feature(
            model, optima_batch_objective(name, part, pre), batch=len(part),
            size=size, steps=steps, lr=lr, parametrization=parametrization,
            decorrelate=decorrelate, transforms=transforms, seed=seed, normalize=normalize,
            device=device, shared_start=True)
        images.append(result.images)
        values.append(result.values)
    seconds = time.perf_counter() - start
    stacked = torch.cat(images).reshape(len(signs), len(channels), *images[0].shape[1:])
    settings = {"layer": name, "signs": list(signs), "size": size, "steps": steps, "lr": lr,
                "parametrization": parametrization, "decorrelate": decorrelate,
                "transforms": "none" if transforms is None else str(transforms), "seed": seed,
                "post_activation": post_activation, "chunk": chunk}
    return ChannelOptima(name, channels, signs, stacked,
                         torch.cat(values).reshape(len(signs), len(channels)), seconds,
                         seconds / len(channels), settings)
