"""The stages of an atlas build: mining, projections, optima. Each one skips what is done.

* **mining**: :func:`deconv.mine_top_k` (resumable checkpoint) for the layers not mined yet,
  then one pass of per-image maxima (:func:`deconv.atlas.stats.per_image_maxima`) for their
  histograms, dead fractions and labels; saved per layer.
* **projections**: per channel the top-k patches (cropped to the receptive field), their
  deconvnet projections (Zeiler & Fergus 2014) and guided-backprop projections (Springenberg
  et al. 2014), batched over many channels; layer-1 filters; one record per channel.
* **optima**: positive and negative optima (Olah et al. 2017) of up to ``budget`` channels
  per layer that have none yet, optimised together (:func:`deconv.optimization.
  optimize_channels`); seconds per optimum recorded.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from deconv.atlas import images as pictures
from deconv.atlas.model_card import LayerCard
from deconv.atlas.sources import AtlasData
from deconv.atlas.stats import channel_summary, per_image_maxima
from deconv.atlas.workdir import WorkDir, read_json, slug, write_json
from deconv.mining import TopKResult, mine_top_k

__all__ = ["mine_layers", "project_layer", "optimize_layer", "image_path"]


def image_path(layer: str, channel: int, kind: str) -> str:
    """Site-relative path of one picture of a channel."""
    return f"img/{slug(layer)}/c{channel:04d}-{kind}.jpg"


#: With ``data.source_boxes`` (crops of larger photos), mine this many candidates per kept
#: entry and keep the best ``k`` that overlap by at most this much (intersection over the
#: smaller receptive-field box, in the photo's pixels), as Fig. 2 does.
DISTINCT = {"candidates": 8, "max_overlap": 0.5, "measure": "min"}


def mine_layers(model, data: AtlasData, layers: list[str], work: WorkDir, k: int,
                batch_size: int, progress: bool) -> dict[str, float]:
    """Mine the layers that have no ``topk.pt``/``stats.json`` yet; returns stage seconds.

    For crops of larger photos (``data.source_boxes``) the top ``k`` of a channel are ``k``
    distinct regions (:data:`DISTINCT`, :func:`deconv.mining.distinct_top_k`): overlapping
    crops of one photo would otherwise show the same pixels several times."""
    todo = [name for name in layers if not (work.layer(name) / "stats.json").is_file()]
    if not todo:
        return {}
    key = hashlib.sha256("|".join(todo).encode()).hexdigest()[:12]
    checkpoint = work.root / f"mining-{key}.pt"
    start = time.perf_counter()
    mined_k = k * DISTINCT["candidates"] if data.source_boxes is not None else k
    result = mine_top_k(model, data.dataset, todo, mined_k, batch_size=batch_size,
                        checkpoint=checkpoint, progress=progress)
    if data.source_boxes is not None:
        from deconv.mining.distinct import distinct_fields

        result = distinct_fields(result, model, tuple(data.image(0).shape[-2:]), k,
                                 data.source_boxes, max_iou=DISTINCT["max_overlap"],
                                 measure=DISTINCT["measure"])
    mined = time.perf_counter()
    tables = per_image_maxima(model, data.dataset, todo, batch_size, progress)
    for name in todo:
        one = TopKResult([name], result.k, result.per_image, {name: result.values[name]},
                         {name: result.image_ids[name]}, {name: result.positions[name]},
                         {name: result.map_sizes[name]}, result.images_seen,
                         list(result.skipped_ids), {"layer": name})
        one.save(work.layer(name) / "topk.pt")
        maxima, nonzero = tables[name]
        summary = channel_summary(maxima, nonzero, result.values[name], result.image_ids[name],
                                  data.labels, data.class_names)
        ys, xs = one.ys(name), one.xs(name)
        for c, record in enumerate(summary):
            n = len(record["top_image_ids"])
            record["top_positions"] = [[int(y), int(x)] for y, x in zip(ys[c][:n], xs[c][:n])]
        write_json(work.layer(name) / "stats.json",
                   {"layer": name, "images": result.images_seen,
                    "skipped_ids": list(result.skipped_ids), "map_size": list(one.map_sizes[name]),
                    "channels": summary})
    checkpoint.unlink(missing_ok=True)
    return {"mining_s": mined - start, "statistics_s": time.perf_counter() - mined}


def _first_layer_filters(model, card: LayerCard) -> torch.Tensor | None:
    """``[C, 3, kh, kw]`` filters when the layer's maps come straight from the first conv."""
    from deconv.activations import first_conv

    try:
        name, conv = first_conv(model)
    except (ValueError, StopIteration):
        return None
    if card.feeding_conv != name or conv.out_channels != card.channels \
            or conv.in_channels != 3 or conv.groups != 1:
        return None
    return conv.weight.detach().cpu().float()


#: Units whose display tiles (uint8) are held at once: a layer's top-k units are projected in
#: groups of about this many, sorted by image so that each image's forward pass serves all its
#: units of the group (2,304 units: ~85 MB of 64 px tiles; an interrupted build loses at most
#: one group).
GROUP_UNITS = 2304


def project_layer(model, data: AtlasData, card: LayerCard, work: WorkDir,
                  deprocess: Callable, tile: int, units: int, progress: bool,
                  guided: bool = True) -> int:
    """Write the patches, projections (deconvnet, guided) and thumbnails of every channel of
    ``card`` that has no projection record yet; ``units`` are projected together. Returns how
    many channels were projected (0: all were done already).

    The channels are taken in groups (:data:`GROUP_UNITS` top-k units); a group's units are
    sent down sorted by image, ``units`` at a time, so an image is preprocessed and run forward
    once for all its units in the group, whatever channels they belong to. Each channel's files
    and record are written when its group is done."""
    from deconv.deconvnet import GenericDeconvnet, deconvnet_for
    from deconv.receptive_field import receptive_field

    name = card.name
    done = work.records(name, "projections", card.channels)
    todo = [c for c in range(card.channels) if c not in done]
    if not todo:
        return 0
    result = TopKResult.load(work.layer(name) / "topk.pt")
    filters = _first_layer_filters(model, card)
    engines = {"deconv": deconvnet_for(model, name)}
    if guided:
        engines["guided"] = GenericDeconvnet(model, rule="guided")
    input_size = tuple(data.image(0).shape[-2:])
    field = receptive_field(model, name, input_size) if len(card.output_shape) == 3 else None
    total = sum(len(result.top(name, c)) for c in todo)
    bar = tqdm(total=total, desc=f"projections {name}", unit="unit", disable=not progress)
    per_group = max(1, GROUP_UNITS // result.k)
    try:
        for begin in range(0, len(todo), per_group):
            group = todo[begin:begin + per_group]
            tiles = _project_group(engines, data, result, name, group, field, deprocess, tile,
                                   units, bar)
            for c in group:
                files = {}
                if c in tiles:
                    shown = {kind: v.float() / 255 for kind, v in tiles.pop(c).items()}
                    for kind in shown:
                        pictures.save_jpeg(pictures.strip(shown[kind], tile),
                                           work.out / image_path(name, c, kind))
                        files[kind] = image_path(name, c, kind)
                    pictures.save_jpeg(pictures.to_pil(shown["deconv"][0], tile),
                                       work.out / image_path(name, c, "thumb"))
                    files["thumb"] = image_path(name, c, "thumb")
                if filters is not None:
                    pictures.save_jpeg(pictures.filter_image(filters[c], tile),
                                       work.out / image_path(name, c, "filter"))
                    files["filter"] = image_path(name, c, "filter")
                write_json(work.record(name, "projections", c), {"files": files})
    finally:
        bar.close()
    return len(todo)


def _as_bytes(image: torch.Tensor) -> torch.Tensor:
    """A display tile in [0, 1] as uint8, rounded as :func:`pictures.to_pil` rounds it (so the
    JPEG written from ``bytes / 255`` is the same)."""
    return torch.round(image.clamp(0, 1) * 255).to(torch.uint8)


def _project_group(engines: dict, data: AtlasData, result: TopKResult, name: str,
                   channels: list[int], field, deprocess: Callable, tile: int, units: int,
                   bar) -> dict[int, dict]:
    """Per channel ``{"patches" | "deconv" | "guided": [k, 3, tile, tile]}`` uint8 tiles
    (``/ 255`` gives the [0, 1] pixels).

    Patches and projections are cropped to the unit's display window (the receptive field,
    :func:`deconv.plots.topk_grids.unit_window`; the whole image for a ``[B, F]`` layer);
    projections are scaled for display with the package's one percentile rule. The units go
    down sorted by image, ``units`` per call; tiles are kept as bytes until the group is done."""
    from deconv.plots.scaling import DISPLAY_PERCENTILE, normalize_for_display
    from deconv.plots.topk_grids import crop, unit_window

    rows = [(c, slot, e) for c in channels for slot, e in enumerate(result.top(name, c))]
    if not rows:
        return {}
    rows.sort(key=lambda row: row[2].image_id)
    param = next(engines["deconv"].module.parameters(), None)
    out: dict[int, dict[str, dict[int, torch.Tensor]]] = {}
    cache: dict[int, torch.Tensor] = {}
    for begin in range(0, len(rows), units):
        batch_rows = rows[begin:begin + units]
        ids = list(dict.fromkeys(e.image_id for _, _, e in batch_rows))
        cache = {i: cache[i] if i in cache else data.image(i) for i in ids}  # the last batch's
        batch = torch.stack([cache[i] for i in ids])
        where = {i: j for j, i in enumerate(ids)}
        if param is not None:
            batch = batch.to(param.device, param.dtype)
        if field is None:
            table = torch.tensor([[where[e.image_id], c] for c, _, e in batch_rows])
        else:
            table = torch.tensor([[where[e.image_id], c, e.y, e.x] for c, _, e in batch_rows])
        projections = {kind: engine.project(batch, name, table, chunk_size=units).cpu().float()
                       for kind, engine in engines.items()}
        pixels = deprocess(batch.cpu().float())
        for j, (c, slot, entry) in enumerate(batch_rows):
            window = unit_window(field, entry.y, entry.x) if field is not None \
                else (0, 0, *pixels.shape[-2:])
            tiles = out.setdefault(c, {"patches": {}, **{kind: {} for kind in projections}})
            tiles["patches"][slot] = _as_bytes(
                pictures.fit(crop(pixels[where[entry.image_id]], window), tile))
            for kind in projections:
                shown = normalize_for_display(crop(projections[kind][j], window),
                                              percentile=DISPLAY_PERCENTILE)
                tiles[kind][slot] = _as_bytes(pictures.fit(shown, tile))
        bar.update(len(batch_rows))
    return {c: {kind: torch.stack([v[slot] for slot in sorted(v)]) for kind, v in tiles.items()}
            for c, tiles in out.items()}


def optimize_layer(model, card: LayerCard, work: WorkDir, budget: int | None,
                   settings: dict, chunk: int, progress: bool) -> float:
    """Optimise up to ``budget`` channels of ``card`` that have no optimum yet (all when
    ``budget`` is None); returns the seconds spent."""
    from deconv.optimization import optimize_channels

    name = card.name
    done = work.records(name, "optima", card.channels)
    todo = [c for c in range(card.channels) if c not in done]
    if budget is not None:
        todo = todo[:budget]
    if not todo:
        return 0.0
    spent = 0.0
    per_call = max(1, chunk // 2)
    bar = tqdm(total=len(todo), desc=f"optima {name}", unit="ch", disable=not progress)
    try:
        for begin in range(0, len(todo), per_call):
            channels = todo[begin:begin + per_call]
            result = optimize_channels(model, name, channels, chunk=chunk, **settings)
            spent += result.seconds
            for j, c in enumerate(channels):
                path = work.out / image_path(name, c, "optima")
                pictures.save_jpeg(pictures.strip(result.images[:, j], settings["size"]), path)
                write_json(work.record(name, "optima", c), {
                    "file": image_path(name, c, "optima"),
                    "seconds": round(result.seconds_per_channel, 4),
                    "objective_positive": round(float(result.values[0, j]), 6),
                    "objective_negative": round(float(result.values[1, j]), 6),
                    "steps": settings["steps"], "size": settings["size"]})
                bar.update(1)
    finally:
        bar.close()
    return spent


def load_layer(work: WorkDir, layer: str, channels: int) -> dict:
    """Everything recorded for one layer: stats, projection and optimum records."""
    return {"stats": read_json(work.layer(layer) / "stats.json"),
            "projections": work.records(layer, "projections", channels),
            "optima": work.records(layer, "optima", channels)}
