"""Fig. 7 (Zeiler & Fergus 2014) on the trained Fashion-MNIST ZFNet: occlusion, all from one net.

``zfnet-fashion`` (64 px input) gives all five panels per image: (a) the image with the
occluder where it hurts most, (b) the total activation of the layer-5 feature map
(``features.13``, rectified conv5) that is strongest in the unoccluded image, per occluder
position, (c) that map's strongest unit projected by the deconvnet, (d) p(true class), (e) the
most probable label. The occluder is a 16 px square (1/4 of the side, as 56 px on the paper's
224 px), stride 4 px in the figures. Two occluders: the paper's grey (the mean training pixel,
0.286, i.e. 0 in the normalized input) and a background-coloured one (black, pixel value 0:
Fashion-MNIST items lie on a black background).

The claim (the probability drops when the object is hidden) is measured on correctly
classified test images, in test-set order until ``--images`` (500) of them have positions both
on the object and on the background (the others are counted), stride 8 px (7 x 7 positions), with
:mod:`deconv.occlusion.localization`: the object mask is the pixels of the 64 px model input
brighter than ``--threshold`` (0.1 on a 0-1 scale); a position is on the object when at least
half its window lies on the mask and on the background when at most a tenth of it does
(``--outside``; 0 would leave out the images of wide garments, which have no window wholly
on the background at stride 8). Per fill: the mean
drop of p(true class) on the object and on the background, the mean difference (bootstrap 95%
interval) and the fraction of images where hiding the object hurts more. For panel (b): the
fraction of positions where the map's total rises above its unoccluded value, overall and by
where the occluder is (on the object, on the background, partly on it).

Writes ``fig7_fashion_grey.png``, ``fig7_fashion_black.png`` and ``fig7_fashion.json``.

Usage: ``python experiments/fig7_fashion.py [--quick] [--out results]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import deconv
from deconv.datasets import FASHION_MNIST_CLASSES, fashion_batch_transform, load_fashion_mnist
from deconv.deconvnet import deconvnet_for
from deconv.deconvnet.grey import GreyInputProjections
from deconv.occlusion.localization import (
    as_dict,
    box_coverage,
    inside_outside_of,
    summarize_inside_outside,
)
from deconv.plots.occlusion import OcclusionPanel, fill_picture, plot_occlusion_panels
from deconv.plots.scaling import DISPLAY_PERCENTILE, normalize_for_display, to_display_image

FIGURE_CLASSES = (0, 1, 3, 5, 8, 9)  # T-shirt/top, Trouser, Dress, Sandal, Bag, Ankle boot
FILLS = {"grey": ("mean", "the paper's grey: the mean training pixel 0.286"),
         "black": ("black", "background colour: black, pixel value 0")}


def grey_projection(loaded, x: torch.Tensor, result) -> tuple[np.ndarray, str]:
    """Panel (c): the strongest unit of the swept map projected by the deconvnet onto the grey
    picture (the sum over the three copies of the grey channel), for display."""
    engine = GreyInputProjections(deconvnet_for(loaded, result.feature_layer))
    y, x_ = result.feature_peak
    units = torch.tensor([[0, result.feature_channel, y, x_]])
    projection = engine.project(x[None], result.feature_layer, units)[0]
    shown = normalize_for_display(projection, percentile=DISPLAY_PERCENTILE)
    return to_display_image(shown), f"strongest unit {(y, x_)}, explicit deconvnet, grey"


def main(argv: list[str] | None = None) -> dict:
    """Sweep, measure, draw, record; returns the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None,
                        help="output directory (default results; --quick: results/quick)")
    parser.add_argument("--images", type=int, default=500,
                        help="correctly classified test images compared by the statistic")
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--stride", type=int, default=8, help="stride for the statistic")
    parser.add_argument("--figure-stride", type=int, default=4, help="stride for the figures")
    parser.add_argument("--threshold", type=float, default=0.1,
                        help="object mask: input pixels (0-1) above this")
    parser.add_argument("--outside", type=float, default=0.1,
                        help="a window at most this much on the object is on the background")
    parser.add_argument("--quick", action="store_true", help="40 images, coarse figure grid")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.figure_stride = 40, 8
    out = Path(args.out or ("results/quick" if args.quick else "results"))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    loaded = deconv.load_model("zfnet-fashion")
    images, labels = load_fashion_mnist("test").tensors
    transform = fashion_batch_transform(loaded.input_size)
    with torch.no_grad():
        predicted = torch.cat([loaded.model(transform(images[i:i + 500])).argmax(1)
                               for i in range(0, len(images), 500)])
    correct = (predicted == labels).nonzero().flatten()
    chosen = correct.tolist()  # swept in order until --images of them are compared
    figure_ids = [int(correct[labels[correct] == c][0]) for c in FIGURE_CLASSES]
    record = {"model": loaded.name, "source": loaded.source,
              "test_accuracy": float((predicted == labels).double().mean()),
              "settings": {k: v for k, v in vars(args).items() if k != "out"},
              "object_mask": f"pixels of the 64 px input (0-1 scale) > {args.threshold}",
              "on_object": "window >= 1/2 on the mask",
              "on_background": f"window <= {args.outside} on the mask",
              "rise": "feature total > 1.01 x its unoccluded value",
              "figure_images": figure_ids,
              "fills": {}}

    def sweep(index: int, fill: str, stride: int):
        x = transform(images[index:index + 1])[0]
        result = deconv.occlusion_sweep(loaded, x, patch=args.patch, stride=stride, fill=fill,
                                        target=int(labels[index]), layer=5, channel="strongest",
                                        batch_size=64, progress=False)
        mask = loaded.deprocess(x)[0] > args.threshold
        return x, result, mask

    for key, (fill, text) in FILLS.items():
        tick = time.perf_counter()
        stats, rises, falls, positions, per_image = [], 0, 0, 0, []
        by_place = {place: [0, 0] for place in ("object", "background", "partly")}
        for index in chosen:
            if sum(s is not None for s in stats) == args.images:
                break
            _, result, mask = sweep(index, fill, args.stride)
            stat = inside_outside_of(result, mask, outside=args.outside)
            stats.append(stat)
            base = result.base_feature_total
            tol = 0.01 * abs(base)  # a rise of more than 1% of the unoccluded total
            rises += int((result.feature_total > base + tol).sum())
            falls += int((result.feature_total < base - tol).sum())
            positions += result.feature_total.numel()
            coverage = box_coverage(result.boxes, mask)
            rising = (result.feature_total.reshape(-1) > base + tol)
            for place, where in (("object", coverage >= 0.5),
                                 ("background", coverage <= args.outside),
                                 ("partly", (coverage > args.outside) & (coverage < 0.5))):
                by_place[place][0] += int(rising[where].sum())
                by_place[place][1] += int(where.sum())
            per_image.append({"id": index, "label": FASHION_MNIST_CLASSES[int(labels[index])],
                              "base_probability": round(result.base_probability, 4),
                              **(as_dict(stat) or {"left_out": True})})
        chosen = chosen[:len(stats)]  # the next fill sweeps the same images
        record["statistic_images_swept"] = len(stats)
        summary = summarize_inside_outside(stats)
        summary.update(fill=text, feature_total_rises_fraction=rises / positions,
                       feature_total_falls_fraction=falls / positions,
                       feature_total_rises_by_place={
                           place: {"fraction": n / max(total, 1), "positions": total}
                           for place, (n, total) in by_place.items()},
                       seconds=round(time.perf_counter() - tick, 1), per_image=per_image)
        record["fills"][key] = summary
        print(f"{key}: {summary['images']} images ({summary['left_out']} without background "
              f"positions): drop on object {summary['mean_inside_drop']:.3f}, on background "
              f"{summary['mean_outside_drop']:.3f}, object hurts more in "
              f"{summary['fraction_object_hurts_more']:.1%}; layer-5 total rises at "
              f"{summary['feature_total_rises_fraction']:.1%} of positions ("
              + ", ".join(f"{p} {v['fraction']:.1%}" for p, v in
                          summary["feature_total_rises_by_place"].items()) + ") "
              f"({summary['seconds']} s)")

        tick = time.perf_counter()
        panels = []
        figure_record = []
        for index in figure_ids:
            x, result, mask = sweep(index, fill, args.figure_stride)
            projection, note = grey_projection(loaded, x, result)
            name = f"#{index} {FASHION_MNIST_CLASSES[int(labels[index])]}"
            panels.append(OcclusionPanel(
                name, loaded.deprocess(x).permute(1, 2, 0).numpy(), None, result, projection,
                note, fill_picture=fill_picture(loaded, x, fill, result.grid.patch)))
            stat = inside_outside_of(result, mask, outside=args.outside)
            figure_record.append({"id": index, **result.summary(), "inside_outside":
                                  as_dict(stat)})
        title = (f"Fig. 7 on {loaded.name}: every panel from this one network (b, c: layer 5 "
                 f"`features.13`, per image its strongest map; d, e: its softmax). "
                 f"Occluder {args.patch} px, {text}.\nOver {summary['images']} correctly "
                 f"classified test images (stride {args.stride}): mean drop of p(true class) "
                 f"{summary['mean_inside_drop']:.3f} with the occluder on the object vs "
                 f"{summary['mean_outside_drop']:.3f} on the background; object hurts more in "
                 f"{summary['fraction_object_hurts_more']:.0%} of images")
        path = out / f"fig7_fashion_{key}.png"
        plot_occlusion_panels(panels, path, title=title, dpi=60)
        summary["figure"] = str(path)
        summary["figure_images"] = figure_record
        summary["figure_seconds"] = round(time.perf_counter() - tick, 1)
    record["seconds"] = round(time.perf_counter() - start, 1)
    (out / "fig7_fashion.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}/fig7_fashion_*.png in {record['seconds']} s")
    return record


if __name__ == "__main__":
    main()
