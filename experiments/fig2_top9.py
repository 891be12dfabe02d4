"""Zeiler & Fergus (2014) Fig. 2: top-9 activations of feature maps, projected, beside patches.

Offline default: ``hed-vgg16`` (VGG16 conv layers with HED edge-detection weights) mined over
crops of the sample photos (:class:`deconv.mining.SampleCrops`: the 10 photos of
``sample_images("all")``, squares of side 1, 1/2 and 1/4 of the short side on a half-overlapping
grid, each resized to 128 x 128: 735 crops). For paper layers 1-5 (modules 3, 8, 15, 22, 29:
the ReLUs after conv1_2, conv2_2, conv3_3, conv4_3, conv5_3), a seeded random subset of the
channels that are alive on at least 9 crops is shown: per channel, the 9 deconvnet
projections (each cropped to the unit's receptive field) beside the 9 image patches.
Overlapping crops of one photo would repeat the same pixels, so a channel's 9 entries are 9
distinct regions: 72 candidates are mined and greedily filtered so that no two entries of the
same photo have receptive fields (in the photo's pixels) overlapping by more than ``--max-iou``
(0.5; :func:`deconv.mining.distinct_top_k`). ``--overlap min`` (default) measures the
intersection over the smaller field, so a small crop lying inside a larger crop of the same
photo counts as a repeat (IoU, ``--overlap iou``, lets it through: at layer 5, where the field
is the whole crop, a 1/4-scale crop inside a 1/2-scale one has IoU 0.25).

Writes ``results/fig2/layer<L>_<module>.png`` (one per layer, a row per channel),
``topk.pt`` (the mined result) and ``topk.json`` (entries, crops, timings).

Usage: ``python experiments/fig2_top9.py [--quick] [--out results/fig2] [--channels 4]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import deconv
from deconv.mining import SampleCrops
from deconv.plots.topk_grids import mine_and_draw


def main(argv: list[str] | None = None) -> dict:
    """Mine, draw and record; returns the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hed-vgg16", help="zoo model")
    parser.add_argument("--layers", nargs="+", default=["1", "2", "3", "4", "5"],
                        help="paper layer numbers or module names")
    parser.add_argument("--channels", type=int, default=4, help="random channels per layer")
    parser.add_argument("--k", type=int, default=9, help="activations per channel")
    parser.add_argument("--size", type=int, default=128, help="side of each crop")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5, 0.25],
                        help="crop sides as fractions of each photo's short side")
    parser.add_argument("--max-iou", type=float, default=0.5,
                        help="largest IoU between two entries of one photo (-1: no filter)")
    parser.add_argument("--overlap", choices=["min", "iou"], default="min",
                        help="overlap measure: intersection over the smaller box, or IoU")
    parser.add_argument("--candidates", type=int, default=8,
                        help="mined candidates per kept entry (for the IoU filter)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="seed of the channel choice")
    parser.add_argument("--out", default=None,
                        help="output directory (default results/fig2; --quick: results/quick/fig2)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse/continue the mining saved in OUT/topk.pt (same settings)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 photo, 2 scales, 64 px crops, 2 channels per layer")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = "results/quick/fig2" if args.quick else "results/fig2"
    names: str | list[str] = "all"
    if args.quick:
        names, args.scales, args.size, args.channels = ["coffee"], [1.0, 0.5], 64, 2
    start = time.perf_counter()
    loaded = deconv.load_model(args.model)
    dataset = SampleCrops(loaded.preprocess, names=names, scales=args.scales, size=args.size)
    layers = [int(x) if x.isdigit() else x for x in args.layers]
    record = mine_and_draw(loaded, dataset, layers, args.out, k=args.k, channels=args.channels,
                           seed=args.seed, batch_size=args.batch_size,
                           tile=48 if args.quick else 64, progress=not args.quick,
                           checkpoint=Path(args.out) / "topk.pt" if args.resume else None,
                           max_iou=None if args.max_iou < 0 else args.max_iou,
                           overlap=args.overlap, candidates=args.candidates)
    total = time.perf_counter() - start
    if record["distinct"]:
        print(f"fig2: distinct regions ({args.overlap} overlap <= {args.max_iou}); channels "
              f"short of {args.k}: "
              f"{record['distinct']['short']}")
    print(f"fig2: {record['images']} crops mined in {record['mining_seconds']} s "
          f"({record['mining_images_per_second']} img/s); total {total:.1f} s")
    for name, entry in record["layers"].items():
        print(f"  layer {entry['paper_layer']} ({name}): channels {entry['channels']} -> "
              f"{entry['figure']} ({entry['seconds']} s)")
    return record


if __name__ == "__main__":
    main()
