"""Fig. 7 (Zeiler & Fergus 2014): occlusion sensitivity, the paper's five panels per photo.

A grey square (the classifier's mean pixel) slides over each photo at 224 px. Per position:
(b) the total activation of one layer-5 feature map (the map holding the strongest activation
in the unoccluded image), (d) the probability of the "correct" class (the top-1 class of the
unoccluded photo; the samples have no ground truth), (e) the most probable label; (c) is that
feature map projected to pixels by the deconvnet. Offline default: probabilities from
``efficientnet-lite0`` (ImageNet), feature maps from ``hed-vgg16`` layer 5 (``29``, conv5_3
rectified; a VGG16 conv stack fine-tuned for edges, no classifier), so both rows of maps
are shown on the same occluded pictures but come from two different networks (the captions
say which).

Default: 4 photos, patch 64 px, stride 16 px (11 x 11 = 121 positions); about 2-3 min on 2
idle cores, dominated by hed-vgg16. ``--quick``: one photo, stride 40 (5 x 5 positions).

The paper's claim as a number (:mod:`deconv.occlusion.localization`): with the annotated
object boxes of ``deconv/data/object_boxes.json`` (the objects that name the target class, or
all of the photo's objects when none does; mapped through the resize and centre crop), the mean
drop of p(target) with the occluder on the object (at least half its window in the boxes)
against on the background (at most a tenth), per photo and over the photos
(``inside_outside`` in the JSON).

Writes ``fig7_occlusion.png`` and ``fig7_occlusion.json`` under ``--out``.

Usage: ``python experiments/fig7_occlusion.py [--quick] [--out results]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import deconv
from deconv.metrics import box_to_input, load_object_boxes
from deconv.occlusion.localization import (
    as_dict,
    box_mask,
    inside_outside_of,
    summarize_inside_outside,
)
from deconv.plots.occlusion import occlusion_panel, plot_occlusion_panels
from deconv.samples import sample_images

IMAGES = ("chelsea", "coffee", "grace_hopper", "astronaut")


def _number_or_text(value: str):
    """``--fill 0.5`` is a number in model-input units; a name stays a name."""
    try:
        return float(value)
    except ValueError:
        return value


def object_mask(name: str, target: int, side: int) -> tuple[torch.Tensor, list[str]] | None:
    """Union of the annotated boxes of the objects that name ``target`` (all of the photo's
    objects when none does), as a mask on the ``side`` px model input; None if not annotated."""
    photo = load_object_boxes().get(name)
    if photo is None:
        return None
    objects = [o for o in photo["objects"] if target in o["class_ids"]] or photo["objects"]
    mask = torch.zeros(side, side, dtype=torch.bool)
    for obj in objects:
        box = box_to_input(obj["box"], tuple(photo["size"]), side=side)
        if box is not None:
            mask |= box_mask(box, side, side)
    return mask, [o["label"] for o in objects]


def main(argv: list[str] | None = None) -> dict:
    """Run the sweeps, write the figure and the JSON; returns the record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None,
                        help="output directory (default results; --quick: results/quick)")
    parser.add_argument("--quick", action="store_true", help="one photo, coarse grid")
    parser.add_argument("--model", default="efficientnet-lite0", help="gives probabilities")
    parser.add_argument("--feature-model", default="hed-vgg16", help="gives the feature map")
    parser.add_argument("--layer", default="5", help="feature layer (name or paper number)")
    parser.add_argument("--images", nargs="+", default=list(IMAGES))
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--fill", default="mean")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.stride = args.images[:1], 40
    out = Path(args.out or ("results/quick" if args.quick else "results"))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model = deconv.load_model(args.model)
    feature_model = (model if args.feature_model == args.model
                     else deconv.load_model(args.feature_model))
    layer = int(args.layer) if args.layer.isdigit() else args.layer
    panels, record = [], {"settings": vars(args).copy(), "images": {}}
    stats = []
    for sample in sample_images(args.images):
        tick = time.perf_counter()
        panel = occlusion_panel(model, sample.image, patch=args.patch, stride=args.stride,
                                fill=_number_or_text(args.fill), layer=layer,
                                feature_model=feature_model, batch_size=args.batch_size,
                                name=sample.name, progress=not args.quick)
        panels.append(panel)
        result = panel.result
        entry = result.record()
        entry.update(seconds=round(time.perf_counter() - tick, 1),
                     projection_engine=panel.projection_note)
        annotated = object_mask(sample.name, result.target, result.image_size[0])
        if annotated is not None:
            stat = inside_outside_of(result, annotated[0], outside=0.1)
            stats.append(stat)
            entry["inside_outside"] = {"objects": annotated[1],
                                       **(as_dict(stat) or {"left_out": True})}
        record["images"][sample.name] = entry
        print(f"{sample.name}: p({result.target_name}) {result.base_probability:.3f} -> min "
              f"{entry['min_probability']:.3f}; map {result.feature_channel} total "
              f"{result.base_feature_total:.0f} -> min {entry['min_feature_total']:.0f} "
              f"({entry['seconds']} s)")
    title = (f"Fig. 7 analogue: probabilities (d, e) from {model.name}; feature map (b, c) from "
             f"{feature_model.name} layer `{panels[0].result.feature_layer}` (per image the map "
             "with the strongest activation)\n"
             f"occluder = {panels[0].result.fill}; "
             "target = top-1 class of the unoccluded photo")
    plot_occlusion_panels(panels, out / "fig7_occlusion.png", title=title, dpi=70)
    record["inside_outside"] = {
        "rule": "on the object: window >= 1/2 in the annotated boxes; on the background: "
                "<= 1/10", **summarize_inside_outside(stats)}
    for name, entry in record["images"].items():
        if "inside_outside" in entry:
            io = entry["inside_outside"]
            print(f"  {name}: drop on object {io.get('inside_drop', float('nan')):.3f}, on "
                  f"background {io.get('outside_drop', float('nan')):.3f}")
    record["seconds"] = round(time.perf_counter() - start, 1)
    (out / "fig7_occlusion.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out / 'fig7_occlusion.png'} in {record['seconds']} s")
    return record


if __name__ == "__main__":
    main()
