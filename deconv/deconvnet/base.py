"""What both deconvnet engines share: unit tables, seeds, chunking and the public calls.

An engine projects *seeds* placed in one layer's output down to pixel space. A seed is either
one unit ``(image, channel, y, x)`` (every other activation of the layer set to zero) or one
whole feature map ``(image, channel)`` (every other map set to zero). The engines differ only
in how they go down (:mod:`deconv.deconvnet.explicit`, :mod:`deconv.deconvnet.generic`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import NamedTuple

import torch

from deconv.errors import InvalidArgumentError
from deconv.layers import module_of, resolve_layer
from deconv.validation import check_images

__all__ = ["Seeds", "TopUnits", "ProjectionEngine", "SEED_MODES"]

#: ``"activation"``: seed with the unit's own value (the paper); ``"unit"``: seed with 1 (the
#: gradient convention of saliency maps and captum's neuron methods).
SEED_MODES = ("activation", "unit")


@dataclass
class Seeds:
    """A chunk of seeds to project, one output sample per row.

    Attributes:
        image (torch.Tensor): long [k], which image each row belongs to.
        channel (torch.Tensor): long [k], which feature map (or feature of a 2-D layer).
        y (torch.Tensor | None): long [k] row of the unit; None seeds the whole map.
        x (torch.Tensor | None): long [k] column of the unit; None seeds the whole map.
        mode (str): one of :data:`SEED_MODES`.
    """

    image: torch.Tensor
    channel: torch.Tensor
    y: torch.Tensor | None
    x: torch.Tensor | None
    mode: str

    def __len__(self) -> int:
        return int(self.image.shape[0])

    @property
    def whole_map(self) -> bool:
        """bool: True when every row seeds a whole feature map (or a 2-D layer's feature)."""
        return self.y is None

    def dense(self, activation: torch.Tensor) -> torch.Tensor:
        """The seed tensor in the layer's full shape.

        Args:
            activation (torch.Tensor): the layer's output for the rows' images, [k, ...].

        Returns:
            torch.Tensor: zeros except the seeded unit (or map) of each row, [k, ...].
        """
        rows = torch.arange(len(self), device=activation.device)
        seed = torch.zeros_like(activation)
        if activation.dim() == 2 or self.whole_map:
            picked = activation[rows, self.channel]
            seed[rows, self.channel] = picked if self.mode == "activation" else 1.0
        else:
            picked = activation[rows, self.channel, self.y, self.x]
            seed[rows, self.channel, self.y, self.x] = (picked if self.mode == "activation"
                                                        else torch.ones_like(picked))
        return seed

    def select(self, rows: torch.Tensor) -> Seeds:
        """The seeds of ``rows`` (long indices or a bool mask), in that order."""
        return Seeds(self.image[rows], self.channel[rows],
                     None if self.y is None else self.y[rows],
                     None if self.x is None else self.x[rows], self.mode)

    def chunks(self, size: int) -> Iterator[Seeds]:
        """Split into consecutive chunks of at most ``size`` rows."""
        for start in range(0, len(self), size):
            part = slice(start, start + size)
            yield Seeds(self.image[part], self.channel[part],
                        None if self.y is None else self.y[part],
                        None if self.x is None else self.x[part], self.mode)


class TopUnits(NamedTuple):
    """The strongest units of a layer.

    Attributes:
        units (torch.Tensor): long [k, 4] rows (image, channel, y, x), or [k, 2] (image,
            channel) for a 2-D layer; strongest first.
        values (torch.Tensor): their activations [k].
    """

    units: torch.Tensor
    values: torch.Tensor


class ProjectionRun(AbstractContextManager):
    """One call's worth of engine state for a batch of images and one layer (engine specific)."""

    #: torch.Size: the layer's output shape for one image, batch dimension included (1, ...).
    layer_shape: torch.Size

    def activation(self, image: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """The layer's output for images ``image`` (long [k]), [k, ...]."""
        raise NotImplementedError

    def project(self, seeds: Seeds) -> torch.Tensor:  # pragma: no cover - abstract
        """Project one chunk of seeds to pixels, [k, C, H, W]."""
        raise NotImplementedError

    def project_all(self, seeds: Seeds, chunk_size: int) -> torch.Tensor:
        """Project every seed, ``chunk_size`` at a time (an engine may regroup them), [K, ...].

        The default projects consecutive chunks with :meth:`project`; the result is in the
        seeds' order whatever the grouping.
        """
        return torch.cat([self.project(chunk) for chunk in seeds.chunks(chunk_size)])


class ProjectionEngine:
    """Public calls shared by the engines: ``project``, ``project_feature_map``, ``top_units``.

    Args:
        model (nn.Module | LoadedModel): the network; never modified.
    """

    def __init__(self, model):
        self.model = model
        self.module = module_of(model)

    # -- engine specific -------------------------------------------------------------------
    def _run(self, images: torch.Tensor, layer: str) -> ProjectionRun:  # pragma: no cover
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------
    def resolve(self, layer: str | int) -> str:
        """The ``named_modules()`` name of ``layer`` (a name or a paper layer number)."""
        return resolve_layer(self.model, layer)

    @torch.no_grad()
    def activations(self, images: torch.Tensor, layer: str | int) -> torch.Tensor:
        """The layer's output for a batch of images.

        Args:
            images (torch.Tensor): model inputs [N, C, H, W].
            layer (str | int): module name or paper layer number.

        Returns:
            torch.Tensor: [N, C', H', W'] (or [N, F] for a fully connected layer).
        """
        images = _check_images(images, self.model)
        with self._run(images, self.resolve(layer)) as run:
            return run.activation(torch.arange(images.shape[0], device=images.device))

    def project(self, images: torch.Tensor, layer: str | int, units,
                seed: str = "activation", chunk_size: int = 64) -> torch.Tensor:
        """Project single units to pixel space, each on its own (Zeiler & Fergus 2014, Sec. 2.1).

        Every other activation of ``layer`` is set to zero for each unit; units from many images
        go down together, ``chunk_size`` at a time.

        Args:
            images (torch.Tensor): model inputs [N, C, H, W].
            layer (str | int): module name (its output is the layer) or paper layer number.
            units (torch.Tensor | Sequence): integer rows (image, channel, y, x), shape [K, 4];
                for a fully connected layer (2-D output) rows (image, feature), shape [K, 2].
            seed (str): ``"activation"`` seeds with the unit's value (the paper), ``"unit"``
                with 1 (the gradient convention; what captum's neuron methods compute).
            chunk_size (int): units sent down together; bounds the memory.

        Returns:
            torch.Tensor: one projection per unit, [K, C, H, W], in the images' dtype.

        Raises:
            ValueError: bad ``units`` (shape, range), ``seed`` or ``chunk_size``.
        """
        images = _check_images(images, self.model)
        name = self.resolve(layer)
        _check_chunk(chunk_size)
        _check_seed(seed)
        with self._run(images, name) as run:
            shape = run.layer_shape
            seeds = _units_to_seeds(units, shape, images.shape[0], seed, images.device)
            return _gather_chunks(run, seeds, chunk_size, images)

    def project_feature_map(self, images: torch.Tensor, layer: str | int, channel: int,
                            seed: str = "activation", chunk_size: int = 16) -> torch.Tensor:
        """Project one whole feature map of every image, every other map set to zero.

        Args:
            images (torch.Tensor): model inputs [N, C, H, W].
            layer (str | int): module name or paper layer number.
            channel (int): the feature map.
            seed (str): ``"activation"`` seeds every unit of the map with its value (the paper;
                the strong units dominate), ``"unit"`` seeds every unit with 1.
            chunk_size (int): images sent down together.

        Returns:
            torch.Tensor: [N, C, H, W].
        """
        images = _check_images(images, self.model)
        name = self.resolve(layer)
        _check_chunk(chunk_size)
        _check_seed(seed)
        with self._run(images, name) as run:
            shape = run.layer_shape
            channels = shape[1]
            if isinstance(channel, bool) or not isinstance(channel, int) \
                    or not 0 <= channel < channels:
                raise InvalidArgumentError(
                    f"channel must be an int in [0, {channels}) for layer {name!r}, "
                    f"got {channel!r}")
            n = images.shape[0]
            index = torch.arange(n, device=images.device)
            seeds = Seeds(index, torch.full_like(index, channel), None, None, seed)
            return _gather_chunks(run, seeds, chunk_size, images)

    @torch.no_grad()
    def top_units(self, images: torch.Tensor, layer: str | int, k: int,
                  channel: int | None = None, distinct_images: bool = False) -> TopUnits:
        """The ``k`` strongest units of a layer over a batch of images.

        Args:
            images (torch.Tensor): model inputs [N, C, H, W].
            layer (str | int): module name or paper layer number.
            k (int): how many (fewer if the layer has fewer candidates).
            channel (int | None): only units of this feature map; any map if None.
            distinct_images (bool): at most one unit per image (the paper's top-9 convention:
                per image the spatial max, then the best images).

        Returns:
            TopUnits: ``units`` [k, 4] (or [k, 2] for a 2-D layer) and their ``values``.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidArgumentError(f"k must be a positive int, got {k!r}")
        act = self.activations(images, layer)
        n = act.shape[0]
        if channel is not None:
            if not 0 <= channel < act.shape[1]:
                raise InvalidArgumentError(f"channel must be in [0, {act.shape[1]}), got {channel}")
            masked = torch.full_like(act, float("-inf"))
            masked[:, channel] = act[:, channel]
            act = masked
        flat = act.reshape(n, -1)
        if distinct_images:
            best, where = flat.max(dim=1)
            values, order = best.topk(min(k, n))
            flat_index = order * flat.shape[1] + where[order]
        else:
            values, flat_index = flat.reshape(-1).topk(min(k, flat.numel()))
        keep = torch.isfinite(values)
        values, flat_index = values[keep], flat_index[keep]
        coords = torch.unravel_index(flat_index, tuple(act.shape))
        return TopUnits(torch.stack(coords, dim=1).long(), values)


def _gather_chunks(run: ProjectionRun, seeds: Seeds, chunk_size: int,
                   images: torch.Tensor) -> torch.Tensor:
    if not len(seeds):
        return images.new_zeros((0, *images.shape[1:]))
    return run.project_all(seeds, chunk_size)


def _check_images(images: torch.Tensor, model=None) -> torch.Tensor:
    """The shared input check (:func:`deconv.validation.check_images`), then ``detach()``."""
    return check_images(images, model).detach()


def _check_chunk(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InvalidArgumentError(f"chunk_size must be a positive int, got {chunk_size!r}")


def _check_seed(seed: str) -> None:
    if seed not in SEED_MODES:
        raise InvalidArgumentError(f"seed must be one of {SEED_MODES}, got {seed!r}")


def _units_to_seeds(units, layer_shape: torch.Size, n_images: int, seed: str,
                    device: torch.device) -> Seeds:
    """Validate a unit table against the layer's output shape and turn it into seeds."""
    units = torch.as_tensor(units, device=device)
    if units.is_floating_point() or units.dtype == torch.bool:
        raise InvalidArgumentError(f"units must be an integer tensor, got dtype {units.dtype}")
    units = units.long()
    spatial = len(layer_shape) == 4
    width = 4 if spatial else 2
    if units.dim() == 1 and units.numel() == width:
        units = units.unsqueeze(0)
    if units.dim() != 2 or units.shape[1] != width:
        what = "(image, channel, y, x)" if spatial else "(image, feature)"
        raise InvalidArgumentError(
            f"units must have shape [K, {width}] with rows {what} for a layer whose "
            f"output is {tuple(layer_shape[1:])} per image; got "
            f"{tuple(units.shape)}")
    limits = [n_images, *layer_shape[1:]]
    names = ["image", "channel", "y", "x"] if spatial else ["image", "feature"]
    for column, (name, limit) in enumerate(zip(names, limits)):
        values = units[:, column]
        if values.numel() and (values.min() < 0 or values.max() >= limit):
            raise InvalidArgumentError(
                f"units column {column} ({name}) must be in [0, {limit}); got "
                f"values from {int(values.min())} to {int(values.max())}")
    if spatial:
        return Seeds(units[:, 0], units[:, 1], units[:, 2], units[:, 3], seed)
    return Seeds(units[:, 0], units[:, 1], None, None, seed)
