"""Zeiler & Fergus (2014) Fig. 2 panels: the top-k projections beside their image patches.

For one channel of one layer, each mined entry ``(image, y, x)`` gives two crops of the same
window: the deconvnet projection of that single unit (every other activation of the layer set
to zero) and the input image. The window is the unit's receptive field (see
:func:`deconv.receptive_field.receptive_field`), as a square of side ``min(field, image side)``
centred on the field and shifted to lie inside the image, so fields that reach into the
padding (or are larger than the image, as at VGG16 conv5 on 128 px crops) still show real
pixels. Patch and projection always use the same window, so they line up pixel for pixel.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deconv.activations import tile_images
from deconv.deconvnet.choose import deconvnet_for
from deconv.errors import InvalidArgumentError
from deconv.layers import module_of
from deconv.mining.result import TopKResult
from deconv.plots.png import save_palette_png
from deconv.plots.scaling import DISPLAY_PERCENTILE, normalize_for_display
from deconv.receptive_field import receptive_field
from deconv.validation import check_channel

__all__ = ["TopKPanel", "unit_window", "crop", "fit_tile", "pick_channels", "top_k_panels",
           "render_top_k_figure", "mine_and_draw"]


@dataclass
class TopKPanel:
    """The crops of one channel: ``projections`` and ``patches``, ``[n, 3, s, s]`` in [0, 1]."""

    layer: str
    channel: int
    values: list[float]
    image_ids: list[int]
    projections: torch.Tensor
    patches: torch.Tensor


def unit_window(field, y: int, x: int) -> tuple[int, int, int, int]:
    """The square display window ``(top, left, bottom, right)`` of unit ``(y, x)``.

    Side ``min(field size, image side)`` per axis, centred on the unit's (unclipped) field,
    shifted to lie inside the image.
    """
    top, left, bottom, right = field.box(y, x, clip=False)
    h, w = field.input_size
    out = []
    for lo, hi, limit in ((top, bottom, h), (left, right, w)):
        side = min(hi - lo, limit)
        start = (lo + hi - side) // 2
        start = min(max(start, 0), limit - side)
        out.append((start, start + side))
    (t, b), (left_, r) = out
    return t, left_, b, r


def crop(images: torch.Tensor, window: tuple[int, int, int, int]) -> torch.Tensor:
    """Crop ``[..., H, W]`` to ``(top, left, bottom, right)``."""
    top, left, bottom, right = window
    return images[..., top:bottom, left:right]


def pick_channels(result: TopKResult, layer: str, count: int, seed: int = 0,
                  min_entries: int | None = None) -> list[int]:
    """A random subset of channels (the paper's "random subset of feature maps"), seeded by
    ``seed`` and the layer name.

    Only channels whose ``min_entries``-th best value is positive (alive on at least that
    many images; ``k`` by default) are eligible. Returned sorted.
    """
    need = (min_entries or result.k) - 1
    values = result.values[layer]
    alive = [c for c in range(values.shape[0])
             if need < values.shape[1] and float(values[c, need]) > 0]
    rng = random.Random(f"{seed}:{layer}")  # a different draw per layer, reproducible
    return sorted(rng.sample(alive, min(count, len(alive))))


def top_k_panels(model, result: TopKResult, image_of: Callable[[int], torch.Tensor],
                 layer: str, channels: Sequence[int], deprocess: Callable, *, engine=None,
                 tile: int = 64, chunk_size: int = 32) -> list[TopKPanel]:
    """Project the top-k units of ``channels`` and crop projections and patches.

    Args:
        model (nn.Module | LoadedModel): the network that was mined.
        result (TopKResult): the mining result.
        image_of (Callable[[int], torch.Tensor]): image id -> preprocessed input ``[3, H, W]``
            (e.g. ``lambda i: dataset[i]``).
        layer (str): module name (as in ``result.layers``).
        channels (Sequence[int]): the channels to show.
        deprocess (Callable): model input -> pixels in [0, 1] (``LoadedModel.deprocess``).
        engine: a deconvnet engine with ``project(images, layer, units)``; by default
            :func:`deconv.deconvnet.deconvnet_for` chooses one.
        tile (int): side in pixels of each displayed crop.
        chunk_size (int): units projected together.

    Returns:
        list[TopKPanel]: one per channel, entries best first.
    """
    engine = engine or deconvnet_for(model, layer)
    rows, images = [], []
    for channel in channels:
        for rank, entry in enumerate(result.top(layer, channel)):
            rows.append((channel, rank, entry))
            images.append(image_of(entry.image_id))
    if not rows:
        return []
    batch = torch.stack(images)
    param = next(engine.module.parameters(), None)
    if param is not None:
        batch = batch.to(param.device, param.dtype)
    units = torch.tensor([[j, c, e.y, e.x] for j, (c, _, e) in enumerate(rows)])
    projections = engine.project(batch, layer, units, chunk_size=chunk_size).cpu().float()
    field = receptive_field(model, layer, tuple(batch.shape[-2:]))
    pixels = deprocess(batch.cpu().float())
    panels = {c: TopKPanel(layer, c, [], [], [], []) for c in channels}
    for j, (channel, _, entry) in enumerate(rows):
        window = unit_window(field, entry.y, entry.x)
        panel = panels[channel]
        panel.values.append(entry.value)
        panel.image_ids.append(entry.image_id)
        shown = normalize_for_display(crop(projections[j], window),
                                      percentile=DISPLAY_PERCENTILE)
        panel.projections.append(fit_tile(shown, tile))
        panel.patches.append(fit_tile(crop(pixels[j], window), tile))
    for panel in panels.values():
        panel.projections = torch.stack(panel.projections) if panel.projections else None
        panel.patches = torch.stack(panel.patches) if panel.patches else None
    return [panels[c] for c in channels if panels[c].patches is not None]


def fit_tile(image: torch.Tensor, side: int) -> torch.Tensor:
    """Resize ``[3, h, w]`` in [0, 1] to ``side`` x ``side`` (nearest when enlarging small
    fields, so single pixels stay visible; area averaging when shrinking)."""
    if tuple(image.shape[-2:]) == (side, side):
        return image
    mode = "nearest" if max(image.shape[-2:]) <= side else "area"
    return torch.nn.functional.interpolate(image[None], size=(side, side), mode=mode)[0]


def render_top_k_figure(panels: Sequence[TopKPanel], path: str | Path, title: str = "",
                        columns: int = 3, gap: int = 6, notes: Sequence[str] | None = None,
                        histograms: Sequence[Sequence[int]] | None = None) -> Path:
    """Write one PNG: a row per channel, its projections (left) beside its patches (right).

    A grey label strip on the left of each row names the channel and its best activation.
    Drawn with PIL directly (no matplotlib), so files stay small.

    Args:
        panels (Sequence[TopKPanel]): one row each.
        path (str | Path): the PNG.
        title (str): first line(s) of the figure (``\n`` separates lines).
        columns (int): tiles per row of a 3 x 3 block.
        gap (int): white pixels between blocks.
        notes (Sequence[str] | None): extra label lines per panel (e.g. why it was chosen).
        histograms (Sequence[Sequence[int]] | None): per panel, counts per class of its
            entries, drawn as bars right of the patches (bar ``i`` is class ``i``; all bars
            on one scale: the panel's number of entries).
    """
    from PIL import ImageDraw

    if not panels:
        raise InvalidArgumentError("no panels to draw: every chosen channel had no entries")
    for what, extra in (("notes", notes), ("histograms", histograms)):
        if extra is not None and len(extra) != len(panels):
            raise InvalidArgumentError(f"{what} must give one entry per panel: {len(extra)} for "
                                       f"{len(panels)} panels")
    blocks = []
    for panel in panels:
        left = tile_images(panel.projections, columns, 2)
        right = tile_images(panel.patches, columns, 2)
        spacer = np.ones((left.shape[0], gap, 3), np.float32)
        blocks.append(np.concatenate([left, spacer, right], axis=1))
    bar_w = 11
    hist_w = 0 if histograms is None else gap * 3 + bar_w * max(len(h) for h in histograms)
    width = max(b.shape[1] for b in blocks) + hist_w
    label_w = 70 if notes is None else 96
    head = 14 * len(title.splitlines()) + 6 if title else 0
    height = head + sum(b.shape[0] + gap for b in blocks)
    canvas = Image.new("RGB", (label_w + width, height), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.multiline_text((4, 3), title, fill="black", spacing=3)
    y = head
    for index, (panel, block) in enumerate(zip(panels, blocks)):
        canvas.paste(Image.fromarray((block * 255).round().astype(np.uint8)), (label_w, y))
        draw.text((4, y + 4), f"ch {panel.channel}", fill="black")
        draw.text((4, y + 18), f"max {panel.values[0]:.3g}", fill="black")
        if notes is not None:
            draw.multiline_text((4, y + 32), notes[index], fill="black", spacing=2)
        if histograms is not None:
            _draw_histogram(draw, list(histograms[index]), label_w + block.shape[1] + 2 * gap,
                            y + 4, y + block.shape[0] - 14, bar_w)
        y += block.shape[0] + gap
    return save_palette_png(canvas, path)


def _draw_histogram(draw, counts: list[int], x0: int, top: int, base: int, bar_w: int) -> None:
    """Bars of ``counts`` (one scale: their sum) between ``top`` and ``base``, indices below."""
    total = max(sum(counts), 1)
    draw.rectangle((x0 - 1, top, x0 + bar_w * len(counts), base), outline=(190,) * 3)
    for c, count in enumerate(counts):
        if count:
            bar_top = base - round((base - top) * count / total)
            draw.rectangle((x0 + c * bar_w + 1, bar_top, x0 + (c + 1) * bar_w - 1, base),
                           fill=(60, 90, 170))
        draw.text((x0 + c * bar_w + 2, base + 1), str(c), fill="black")


def mine_and_draw(loaded, dataset, layers: Sequence[str | int], out: str | Path, *, k: int = 9,
                  channels: int | Sequence[int] = 4, seed: int = 0, batch_size: int = 16,
                  tile: int = 64, num_workers: int = 0, progress: bool = True,
                  checkpoint: str | Path | None = None, max_iou: float | None = None,
                  overlap: str = "iou", candidates: int = 8, checkpoint_every: int = 50) -> dict:
    """Mine ``dataset`` once, then write one Fig. 2 PNG per layer and ``topk.json``.

    Args:
        loaded (LoadedModel): the model (gives ``preprocess``/``deprocess``, paper layers).
        dataset (torch.utils.data.Dataset): item ``i`` is the input ``[3, H, W]`` (or a tuple
            starting with it, or None for a bad file); image ids are dataset indices.
        layers (Sequence[str | int]): module names or paper layer numbers.
        out (str | Path): output folder (``layer<L>_<module>.png``, ``topk.pt``, ``topk.json``).
        k (int): entries per channel.
        channels (int | Sequence[int]): how many random channels per layer (seeded), or the
            channel indices to show in every layer.
        seed (int): seed of the channel choice.
        batch_size (int): images per forward while mining.
        tile (int): side of each crop in the figure.
        num_workers (int): decoding workers.
        progress (bool): progress bars.
        checkpoint (str | Path | None): resumable mining state (see :func:`mine_top_k`).
        max_iou (float | None): if set, a channel's ``k`` entries are distinct regions: no two
            of one source overlap by more than this (receptive-field boxes in the source's
            coordinates, via ``dataset.source_boxes`` when the dataset has it, e.g.
            :class:`~deconv.mining.SampleCrops`); ``k * candidates`` are mined, then
            :func:`deconv.mining.distinct_top_k` keeps the best ``k`` non-overlapping ones.
        overlap (str): ``"iou"`` or ``"min"`` (intersection over the smaller box), see
            :func:`deconv.mining.distinct.box_iou`.
        candidates (int): spare candidates per kept entry when ``max_iou`` is set.
        checkpoint_every (int): batches between saves of the state (it is also saved on
            Ctrl-C or a crash).

    Returns:
        dict: what was written to ``topk.json`` (timings, channels, entries, figure paths).
    """
    import json
    import time

    from deconv.layers import resolve_layer
    from deconv.mining.top_k import mine_top_k

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = [resolve_layer(loaded, layer) for layer in layers]
    paper = {v: k_ for k_, v in getattr(loaded, "layers", {}).items()}
    if not isinstance(channels, int):  # refused before mining, not after
        for name, count in _channel_counts(loaded, dataset, names).items():
            for c in channels:
                check_channel(c, count, name)
    start = time.perf_counter()
    mined_k = k if max_iou is None else k * candidates
    result = mine_top_k(loaded, dataset, names, k=mined_k, batch_size=batch_size,
                        num_workers=num_workers, progress=progress, checkpoint=checkpoint,
                        checkpoint_every=checkpoint_every)
    mining_s = time.perf_counter() - start
    if result.images_seen == 0:
        raise InvalidArgumentError(
            f"no image could be read: all {result.skipped} files were skipped (see the "
            f"warnings); give a folder of readable images")
    distinct = None
    if max_iou is not None:
        from deconv.mining.distinct import distinct_fields

        first = dataset[0]
        size = tuple((first[0] if isinstance(first, (tuple, list)) else first).shape[-2:])
        result = distinct_fields(result, loaded, size, k, getattr(dataset, "source_boxes", None),
                                 max_iou=max_iou, measure=overlap)
        distinct = result.meta["distinct"]
    result.save(out / "topk.pt")

    def image_of(i: int) -> torch.Tensor:
        item = dataset[i]
        return item[0] if isinstance(item, (tuple, list)) else item

    record: dict = {"model": getattr(loaded, "name", type(loaded).__name__),
                    "source": getattr(loaded, "source", ""), "k": k,
                    "images": result.images_seen, "skipped_ids": result.skipped_ids,
                    "mining_seconds": result.meta.get("seconds", round(mining_s, 1)),
                    "reused_checkpoint": mining_s < 0.5 * result.meta.get("seconds", 0.0),
                    "mining_images_per_second": result.meta.get("images_per_second"),
                    "distinct": distinct, "layers": {}}
    if hasattr(dataset, "describe"):
        record["dataset"] = dataset.describe()
    for name in names:
        start = time.perf_counter()
        enough = min(k, max(result.images_seen, 1))
        chosen = (pick_channels(result, name, channels, seed=seed, min_entries=enough)
                  if isinstance(channels, int)
                  else list(channels))
        panels = top_k_panels(loaded, result, image_of, name, chosen, loaded.deprocess,
                              tile=tile)
        label = f"layer {paper[name]} ({name})" if name in paper else f"layer {name}"
        stem = f"layer{paper[name]}_{name}" if name in paper else f"layer_{name}"
        path = None
        if panels:
            path = render_top_k_figure(
                panels, out / f"{stem.replace('.', '-')}.png",
                title=f"{record['model']} {label}: top {k} projections | image patches")
        record["layers"][name] = {
            "paper_layer": paper.get(name), "map_size": list(result.map_sizes[name]),
            "channels": chosen, "figure": str(path) if path else None,
            "seconds": round(time.perf_counter() - start, 1),
            "entries": {str(p.channel): [
                {"value": round(v, 4), "image_id": i,
                 **(dataset.describe(i) if hasattr(dataset, "describe") else {})}
                for v, i in zip(p.values, p.image_ids)] for p in panels}}
        if hasattr(dataset, "files"):
            for p in panels:
                for entry, i in zip(record["layers"][name]["entries"][str(p.channel)],
                                    p.image_ids):
                    entry["file"] = str(dataset.files[i])
    (out / "topk.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def _channel_counts(loaded, dataset, names: Sequence[str]) -> dict[str, int]:
    """Channels of each layer, from one forward of the first readable item of ``dataset``."""
    import warnings

    from deconv.mining.taps import channel_counts

    for i in range(min(len(dataset), 16)):
        with warnings.catch_warnings(record=True):  # the mining run reports bad files
            warnings.simplefilter("always")
            item = dataset[i]
        item = item[0] if isinstance(item, (tuple, list)) else item
        if isinstance(item, torch.Tensor):
            param = next(module_of(loaded).parameters(), None)
            batch = item[None] if param is None else item[None].to(param.device, param.dtype)
            return channel_counts(loaded, batch, names)
    return {}
