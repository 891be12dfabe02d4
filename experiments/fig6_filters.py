"""Zeiler & Fergus (2014) Fig. 6: layer-1 filters of every zoo model, and dead feature maps.

For every model of the zoo whose weights are here (others are listed as skipped, with the
reason), writes ``results/fig6/filters_<model>.png``: the filters of the first ``Conv2d``, each
scaled to [0, 1] on its own (colour for RGB inputs; a flat filter shows mid-grey), enlarged
with nearest-neighbour so a pixel of the kernel is a block of the image.

Then, over crops of the sample photos (:class:`deconv.mining.SampleCrops`, all 10 photos,
scales 1 and 1/2, half-overlapping, 112 px, or the model's input size when its
fully-connected layers need it), counts per paper layer the **dead** feature maps
(every activation exactly zero, ``|a| <= 0``, on every crop) and the **mostly dead** ones (zero
on at least 99 % of the crops), the fraction of zero activations, and the layer-1 filters whose
weight RMS is below 1 % of the layer's median ("weak"). Only rectified layers are counted
(a linear layer's output is almost never exactly zero). Written to
``results/dead_filters.json``.

Note: ``zfnet`` has no trained weights offline (the paper's random init), so its filters are
noise and its statistics describe an untrained net. ``alexnet``/``vgg16`` need ImageNet weights
in the torch hub cache.

Usage: ``python experiments/fig6_filters.py [--quick] [--out results]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import deconv
from deconv.activations import dead_feature_maps, dead_filters, filter_grid, first_conv
from deconv.mining import SampleCrops
from deconv.zoo import model_info

ATOL = 0.0
DEAD_FRACTION = 0.99


def save_filter_png(grid: np.ndarray, path: Path, kernel: int) -> None:
    """Write a filter grid, enlarged so a kernel is about 40 px wide (nearest neighbour)."""
    scale = max(1, round(40 / kernel))
    pixels = (np.nan_to_num(grid, nan=1.0) * 255).round().astype(np.uint8)
    image = Image.fromarray(pixels).resize((grid.shape[1] * scale, grid.shape[0] * scale),
                                           Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)


def _runs_at(loaded, size: int) -> bool:
    """Whether the whole model runs on ``size`` px inputs (fully-connected layers may not)."""
    try:
        with torch.no_grad():
            loaded.model(torch.zeros(1, 3, size, size, device=loaded.device))
    except RuntimeError:
        return False
    return True


def main(argv: list[str] | None = None) -> dict:
    """Draw the filter grids, count dead maps; returns the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None,
                        help="output directory (default results; results/quick with --quick)")
    parser.add_argument("--models", nargs="*", default=None, help="zoo models (default: all)")
    parser.add_argument("--size", type=int, default=112, help="side of each crop")
    parser.add_argument("--quick", action="store_true", help="one photo, scale 1 and 1/2")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = "results/quick" if args.quick else "results"
    out = Path(args.out)
    names: str | list[str] = ["coffee"] if args.quick else "all"
    record: dict = {"definition": {
        "dead": "feature map with every activation |a| <= atol on every input",
        "mostly_dead": "feature map that is all-zero on at least dead_fraction of the inputs",
        "weak_filter": "layer-1 filter whose weight RMS < 1% of the layer's median RMS",
        "atol": ATOL, "dead_fraction": DEAD_FRACTION}, "models": {}}
    for name in args.models or deconv.list_models():
        info = model_info(name)
        if not info.available():
            record["models"][name] = {"status": "skipped: weights not available here"}
            print(f"{name}: weights not available here; skipped")
            continue
        start = time.perf_counter()
        loaded = deconv.load_model(name)
        conv_name, conv = first_conv(loaded)
        png = out / "fig6" / f"filters_{name}.png"
        save_filter_png(filter_grid(conv.weight), png, conv.kernel_size[1])
        size = args.size if _runs_at(loaded, args.size) else loaded.input_size
        data = SampleCrops(loaded.preprocess, names=names, scales=(1.0, 0.5), size=size)
        linear = set(loaded.extra.get("linear_layers", []))
        layers = {n: m for n, m in loaded.layers.items() if m not in linear}
        stats = dead_feature_maps(loaded, data, list(layers.values()), atol=ATOL,
                                  dead_fraction=DEAD_FRACTION, batch_size=16,
                                  progress=not args.quick)
        entry = {
            "status": "ok", "source": loaded.source, "filters_png": str(png),
            "layer1_conv": {"module": conv_name, "shape": list(conv.weight.shape),
                            "stride": list(conv.stride), **dead_filters(conv.weight)},
            "dataset": data.describe(),
            "layers": {str(number): {"module": module, **{
                key: value for key, value in stats[module].to_dict().items()
                if key not in ("layer", "atol", "dead_fraction")}}
                for number, module in layers.items()},
            "not_counted_linear_layers": sorted(linear),
            "seconds": round(time.perf_counter() - start, 1)}
        for stat in entry["layers"].values():
            stat["zero_fraction"] = round(stat["zero_fraction"], 4)
        record["models"][name] = entry
        summary = ", ".join(f"L{n}: {s['dead']}/{s['mostly_dead']}/{s['channels']}"
                            for n, s in entry["layers"].items())
        print(f"{name}: {entry['seconds']} s; dead/mostly dead/channels {summary}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "dead_filters.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


if __name__ == "__main__":
    main()
