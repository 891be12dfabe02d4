"""Feature maps of one image, layer-1 filter grids, and dead feature maps over a dataset.

Vocabulary (Zeiler & Fergus 2014): a *feature map* is one channel of a layer's output (for the
statistics below, use a rectified output: a ReLU or pooling module); the *filter* is the weights
that produce it. A feature map is **dead** on a dataset when it is zero (every activation
``<= atol``, ``atol = 0`` by default: exactly zero, as ReLU gives) for every input, and
**mostly dead** when it is zero for at least ``dead_fraction`` (default 99 %) of the inputs: the
symptom of a too high learning rate that CS231n describes, and the "dead features" of the
paper's Fig. 6.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from deconv.errors import InvalidArgumentError
from deconv.layers import module_of, resolve_layer
from deconv.mining.sources import iter_batches
from deconv.mining.taps import LayerTaps
from deconv.validation import check_finite

__all__ = ["feature_maps", "sparsity", "map_grid", "first_conv", "filter_grid", "tile_images",
           "DeadMapCounts", "DeadMapStats", "dead_feature_maps", "dead_filters", "dead_map_counts",
           "dead_map_stats"]


@torch.no_grad()
def feature_maps(model, image: torch.Tensor, layer: str | int) -> torch.Tensor:
    """The feature maps of one image at ``layer`` (that module's output), ``[C, H, W]``.

    Args:
        model (nn.Module | LoadedModel): the network (left unchanged).
        image (torch.Tensor): one preprocessed image ``[3, H, W]`` (or ``[1, 3, H, W]``).
        layer (str | int): module name or paper layer number.
    """
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[0] != 1:
        raise InvalidArgumentError(f"give one image [3, H, W], got shape {tuple(image.shape)}")
    check_finite("image", image)
    name = resolve_layer(model, layer)
    captured: list[torch.Tensor] = []
    param = next(module_of(model).parameters(), None)
    device = param.device if param is not None else image.device
    with LayerTaps(model, [name], lambda _, out: captured.append(out.detach().clone())) as taps:
        taps.run(image.to(device, param.dtype if param is not None else image.dtype))
    maps = captured[0][0]
    return maps if maps.ndim == 3 else maps[:, None, None]


def sparsity(maps: torch.Tensor, atol: float = 0.0) -> float:
    """Fraction of activations that are zero (``|a| <= atol``)."""
    return float((maps.abs() <= atol).float().mean())


def map_grid(maps: torch.Tensor, columns: int | None = None, normalize: str = "per-map",
             pad: int = 1) -> np.ndarray:
    """Tile feature maps ``[C, H, W]`` into one grey image in [0, 1] (NaN in the padding).

    Args:
        maps (torch.Tensor): the maps.
        columns (int | None): maps per row; about ``sqrt(C)`` by default.
        normalize (str): ``"per-map"`` (each map to its own [0, max]) or ``"shared"`` (one
            scale for all, so strong and weak maps compare). A zero map stays black, never NaN.
        pad (int): pixels between tiles.
    """
    if normalize not in ("per-map", "shared"):
        raise InvalidArgumentError(f"normalize must be 'per-map' or 'shared', got {normalize!r}")
    maps = maps.detach().float().cpu()
    c, h, w = maps.shape
    low = maps.amin(dim=(1, 2), keepdim=True).clamp(max=0)
    if normalize == "shared":
        low = low.amin()
    shifted = maps - low
    high = shifted.amax(dim=(1, 2), keepdim=True)
    if normalize == "shared":
        high = high.amax()
    scaled = (shifted / torch.where(high > 0, high, torch.ones_like(high))).numpy()
    columns = columns or int(np.ceil(np.sqrt(c)))
    rows = int(np.ceil(c / columns))
    grid = np.full((rows * (h + pad) - pad, columns * (w + pad) - pad), np.nan, np.float32)
    for i in range(c):
        r, q = divmod(i, columns)
        grid[r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = scaled[i]
    return grid


def first_conv(model) -> tuple[str, nn.Conv2d]:
    """The first ``nn.Conv2d`` in ``named_modules()`` order: layer 1's filters.

    Raises:
        ValueError: the model has no Conv2d.
    """
    for name, module in module_of(model).named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise InvalidArgumentError("the model has no nn.Conv2d, so it has no layer-1 filters to show")


def filter_grid(weight: torch.Tensor, columns: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile conv filters ``[F, C, kh, kw]`` into one image, each filter scaled to [0, 1] alone.

    Three input channels are shown in colour (RGB), others as the mean over input channels in
    grey. Per-filter min-max scaling (a flat filter becomes mid-grey) makes weak filters visible;
    compare their strength with :func:`dead_filters`.

    Returns:
        np.ndarray: ``[H, W, 3]`` float image in [0, 1] (white padding).
    """
    if weight.ndim != 4:
        raise InvalidArgumentError(
            f"expected conv weights [F, C, kh, kw], got {tuple(weight.shape)}")
    w = weight.detach().float().cpu()
    if w.shape[1] != 3:
        w = w.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    low = w.amin(dim=(1, 2, 3), keepdim=True)
    span = w.amax(dim=(1, 2, 3), keepdim=True) - low
    w = torch.where(span > 0, (w - low) / torch.where(span > 0, span, 1), torch.full_like(w, .5))
    return tile_images(w, columns or int(np.ceil(np.sqrt(w.shape[0]))), pad)


def tile_images(tiles: torch.Tensor, columns: int, gap: int = 1) -> np.ndarray:
    """Tile images ``[n, 3, h, w]`` (values in [0, 1]) row by row into one ``[H, W, 3]`` array.

    Args:
        tiles (torch.Tensor): the images, all the same size.
        columns (int): tiles per row.
        gap (int): white pixels between tiles.

    Returns:
        np.ndarray: float32 ``[H, W, 3]`` with white (1.0) gaps.
    """
    n, _, h, w = tiles.shape
    rows = int(np.ceil(n / columns))
    grid = np.ones((rows * (h + gap) - gap, columns * (w + gap) - gap, 3), np.float32)
    for i in range(n):
        r, q = divmod(i, columns)
        grid[r * (h + gap):r * (h + gap) + h, q * (w + gap):q * (w + gap) + w] = \
            tiles[i].detach().float().cpu().permute(1, 2, 0).numpy()
    return grid


def dead_filters(weight: torch.Tensor, relative: float = 0.01) -> dict:
    """Filters whose weights nearly vanished: RMS below ``relative`` x the layer's median RMS.

    Returns:
        dict: ``filters``, ``weak`` (count), ``weak_ids``, ``rms_median``, ``rms_max``.
    """
    rms = weight.detach().float().flatten(1).pow(2).mean(1).sqrt()
    median = float(rms.median())
    weak = (rms < relative * median).nonzero().flatten().tolist()
    return {"filters": int(rms.numel()), "weak": len(weak), "weak_ids": weak,
            "relative_threshold": relative, "rms_median": median, "rms_max": float(rms.max())}


@dataclass
class DeadMapStats:
    """Dead-feature-map statistics of one layer over a dataset.

    Attributes:
        layer (str): module name.
        channels (int): feature maps.
        images (int): inputs seen.
        dead (int): maps zero on every input.
        mostly_dead (int): maps zero on at least ``dead_fraction`` of the inputs.
        dead_ids (list[int]): channels that are dead.
        mostly_dead_ids (list[int]): channels that are mostly dead.
        zero_fraction (float): fraction of all activations of the layer that are zero.
        atol (float): an activation counts as zero when ``|a| <= atol``.
        dead_fraction (float): threshold for "mostly dead".
    """

    layer: str
    channels: int
    images: int
    dead: int
    mostly_dead: int
    dead_ids: list[int]
    mostly_dead_ids: list[int]
    zero_fraction: float
    atol: float
    dead_fraction: float

    def to_dict(self) -> dict:
        """A JSON-able dict."""
        return asdict(self)


@dataclass
class DeadMapCounts:
    """Partial counts behind :class:`DeadMapStats`, exact to add over shards of a dataset.

    Attributes:
        images (int): inputs seen.
        active (dict[str, torch.Tensor]): per layer, ``[C]`` int64: inputs on which each map
            has a nonzero activation (empty when no input was seen).
        zeros (dict[str, int]): per layer, activations that are zero.
        totals (dict[str, int]): per layer, activations counted.
    """

    images: int
    active: dict[str, torch.Tensor]
    zeros: dict[str, int]
    totals: dict[str, int]


@torch.no_grad()
def dead_map_counts(model, data, layers: Sequence[str | int], *, atol: float = 0.0,
                    batch_size: int = 32, preprocess: Callable | None = None,
                    progress: bool = True) -> DeadMapCounts:
    """One streaming pass counting, per layer and map, the inputs with a nonzero activation.

    The counts of disjoint shards add up (integers) to those of the whole dataset, which is how
    :func:`deconv.mining.distributed.dead_feature_maps_distributed` reduces them exactly.
    Arguments as in :func:`dead_feature_maps`.
    """
    if preprocess is None and not isinstance(model, nn.Module):
        preprocess = getattr(model, "preprocess", None)
    names = list(dict.fromkeys(resolve_layer(model, layer) for layer in layers))
    active: dict[str, torch.Tensor] = {}
    zeros: dict[str, int] = dict.fromkeys(names, 0)
    totals: dict[str, int] = dict.fromkeys(names, 0)

    def reduce(name: str, out: torch.Tensor) -> None:
        flat = out.detach().flatten(2) if out.ndim == 4 else out.detach()[:, :, None]
        is_zero = flat.abs() <= atol
        counts = (~is_zero).any(dim=2).sum(dim=0).cpu()
        active[name] = active[name] + counts if name in active else counts
        zeros[name] += int(is_zero.sum())
        totals[name] += is_zero.numel()

    param = next(module_of(model).parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    batches, total = iter_batches(data, batch_size, preprocess)
    images = 0
    with LayerTaps(model, names, reduce) as taps, tqdm(total=total, disable=not progress,
                                                       unit="img", desc="dead maps") as bar:
        for batch in batches:
            if len(batch.ids):
                taps.run(batch.images.to(device, dtype))
                images += len(batch.ids)
            bar.update(batch.consumed)
    for name in names:
        active.setdefault(name, torch.zeros(0, dtype=torch.long))
    return DeadMapCounts(images, active, zeros, totals)


def dead_map_stats(counts: DeadMapCounts, atol: float = 0.0, dead_fraction: float = 0.99
                   ) -> dict[str, DeadMapStats]:
    """Turn (possibly reduced) :class:`DeadMapCounts` into :class:`DeadMapStats` per layer."""
    if not 0 < dead_fraction <= 1:
        raise InvalidArgumentError(f"dead_fraction must be in (0, 1], got {dead_fraction}")
    images = counts.images
    stats = {}
    for name, active in counts.active.items():
        zero_images = images - active
        dead = (active == 0).nonzero().flatten().tolist()
        mostly = (zero_images >= dead_fraction * images).nonzero().flatten().tolist()
        stats[name] = DeadMapStats(name, int(active.numel()), images, len(dead), len(mostly),
                                   dead, mostly, counts.zeros[name] / max(counts.totals[name], 1),
                                   atol, dead_fraction)
    return stats


@torch.no_grad()
def dead_feature_maps(model, data, layers: Sequence[str | int], *, atol: float = 0.0,
                      dead_fraction: float = 0.99, batch_size: int = 32,
                      preprocess: Callable | None = None, progress: bool = True,
                      ) -> dict[str, DeadMapStats]:
    """Count, per layer, the feature maps that are zero for all (or almost all) inputs.

    One streaming pass (same data sources as :func:`deconv.mine_top_k`); each output is
    reduced in its hook to per-channel "nonzero anywhere" flags and a zero count
    (:func:`dead_map_counts`, then :func:`dead_map_stats`).

    Args:
        model (nn.Module | LoadedModel): the network (left unchanged).
        data: a folder, a list of images, a tensor ``[N, 3, H, W]``, a Dataset or DataLoader.
        layers (Sequence[str | int]): module names or paper layer numbers (rectified outputs).
        atol (float): activations with ``|a| <= atol`` count as zero.
        dead_fraction (float): a map zero on at least this fraction of inputs is mostly dead.
        batch_size (int): images per forward.
        preprocess (Callable | None): PIL image -> model input (a LoadedModel gives one).
        progress (bool): show a progress bar.

    Returns:
        dict[str, DeadMapStats]: per module name.
    """
    if not 0 < dead_fraction <= 1:
        raise InvalidArgumentError(f"dead_fraction must be in (0, 1], got {dead_fraction}")
    counts = dead_map_counts(model, data, layers, atol=atol, batch_size=batch_size,
                             preprocess=preprocess, progress=progress)
    return dead_map_stats(counts, atol, dead_fraction)
