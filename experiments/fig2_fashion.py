"""Fig. 2 (Zeiler & Fergus 2014) on the trained Fashion-MNIST ZFNet: top-9 per feature map.

``zfnet-fashion`` (the paper's layer types and order, max-pools with switches, 10 classes,
64 px input) is mined over the 10,000 Fashion-MNIST test images (:func:`deconv.mine_top_k`:
per image the spatial max of each map, then the 9 best images). For each of layers 1-5 (the
rectified outputs ``features.1``, ``.5``, ``.9``, ``.11``, ``.13``) 9 feature maps are shown,
chosen to show the range: the 3 strongest (largest 9th-best activation), the 3 most
class-selective (lowest entropy of the labels of their top 9; ties: stronger first) and 3
random live ones (seeded; alive on at least 9 images). Per map: the 9 deconvnet projections of
the single units (explicit deconvnet: unpool with the switches, rectify, transposed filters),
summed over the three input channels (the model sees the grey image copied into RGB, so the
sum is the projection onto the grey picture; ``GreyInputProjections``),
each cropped to the unit's receptive field and contrast-normalized on its own (zero = grey, the
99.5th percentile of ``|value|`` = black / white: "per unit", as the paper shows each
projection), beside the 9 image patches, and the class histogram of the top 9 (bar i = class
i; legend in the title). Layers 3-5 have fields larger than the 64 px input (75, 107, 139 px),
so their patches are whole images.

Selectivity over all live maps of each layer is in the JSON: the mean entropy (bits) of the
top-9 labels against the entropy of 9 labels drawn at random from the test set (a seeded
Monte-Carlo baseline), and the fraction of maps whose top 9 share one class.

Writes ``results/fig2_fashion/layer<L>.png`` and ``fig2_fashion.json``.

Usage: ``python experiments/fig2_fashion.py [--quick] [--out results/fig2_fashion]``
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch

import deconv
from deconv.datasets import FASHION_MNIST_CLASSES, fashion_batch_transform, load_fashion_mnist
from deconv.deconvnet import deconvnet_for
from deconv.deconvnet.grey import GreyInputProjections
from deconv.plots.topk_grids import render_top_k_figure, top_k_panels

PER_REASON = 3  # maps per selection reason (strongest, selective, random)


class _Batches:
    """The test images as model-input batches, in order (ids = dataset indices)."""

    def __init__(self, images: torch.Tensor, transform, batch_size: int = 500):
        self.images, self.transform, self.batch_size = images, transform, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __iter__(self):
        for start in range(0, len(self.images), self.batch_size):
            yield self.transform(self.images[start:start + self.batch_size])


def label_entropy(labels: list[int]) -> float:
    """Entropy in bits of the empirical distribution of ``labels``."""
    counts = torch.bincount(torch.tensor(labels), minlength=len(FASHION_MNIST_CLASSES)).double()
    p = counts[counts > 0] / counts.sum()
    return max(0.0, float(-(p * p.log2()).sum()))


def choose_maps(values: torch.Tensor, entropies: list[float], k: int, seed: str
                ) -> list[tuple[int, str]]:
    """(channel, reason) for the strongest, the most class-selective and random live maps."""
    live = [c for c in range(values.shape[0]) if float(values[c, k - 1]) > 0]
    chosen: list[tuple[int, str]] = []
    strongest = sorted(live, key=lambda c: -float(values[c, k - 1]))
    chosen += [(c, "strongest") for c in strongest[:PER_REASON]]
    taken = {c for c, _ in chosen}
    selective = sorted((c for c in live if c not in taken),
                       key=lambda c: (entropies[c], -float(values[c, k - 1])))
    chosen += [(c, "selective") for c in selective[:PER_REASON]]
    taken = {c for c, _ in chosen}
    rest = [c for c in live if c not in taken]
    chosen += [(c, "random") for c in sorted(random.Random(seed).sample(
        rest, min(PER_REASON, len(rest))))]
    return chosen


def random_entropy(labels: torch.Tensor, k: int, draws: int = 2000, seed: int = 0) -> float:
    """Mean entropy of the labels of ``k`` test images drawn at random (no replacement)."""
    g = torch.Generator().manual_seed(seed)
    return sum(label_entropy(labels[torch.randperm(len(labels), generator=g)[:k]].tolist())
               for _ in range(draws)) / draws


def main(argv: list[str] | None = None) -> dict:
    """Mine, choose, draw, record; returns the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None,
                        help="output folder (default results/fig2_fashion; --quick: "
                             "results/quick/fig2_fashion)")
    parser.add_argument("--limit", type=int, default=None, help="first N test images only")
    parser.add_argument("--k", type=int, default=9)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random maps")
    parser.add_argument("--quick", action="store_true", help="1,000 test images")
    args = parser.parse_args(argv)
    if args.quick and args.limit is None:
        args.limit = 1000
    out = Path(args.out or ("results/quick/fig2_fashion" if args.quick
                            else "results/fig2_fashion"))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    loaded = deconv.load_model("zfnet-fashion")
    images, labels = load_fashion_mnist("test", limit=args.limit).tensors
    transform = fashion_batch_transform(loaded.input_size)
    layers = [loaded.layers[n] for n in range(1, 6)]
    result = deconv.mine_top_k(loaded, _Batches(images, transform), layers, k=args.k,
                               progress=False)
    mining_s = time.perf_counter() - start
    baseline = random_entropy(labels, args.k)
    legend = ", ".join(f"{i} {name}" for i, name in enumerate(FASHION_MNIST_CLASSES[:5]))
    legend += "\n" + ", ".join(f"{i + 5} {name}"
                               for i, name in enumerate(FASHION_MNIST_CLASSES[5:]))
    record = {"model": loaded.name, "source": loaded.source, "images": result.images_seen,
              "k": args.k, "mining_seconds": round(mining_s, 1),
              "selection": f"{PER_REASON} strongest (9th-best value), {PER_REASON} lowest "
                           f"top-{args.k} label entropy, {PER_REASON} random live (seed "
                           f"{args.seed})",
              "display": "each projection cropped to the unit's receptive field and scaled on "
                         "its own: 0 grey, 99.5th percentile of |value| black/white",
              "random_top_k_entropy_bits": round(baseline, 3), "layers": {}}

    def image_of(i: int) -> torch.Tensor:
        return transform(images[i:i + 1])[0]

    for paper, name in zip(range(1, 6), layers):
        tick = time.perf_counter()
        values, ids = result.values[name], result.image_ids[name]
        top_labels = [labels[ids[c][ids[c] >= 0]].tolist() for c in range(values.shape[0])]
        entropies = [label_entropy(t) if t else math.inf for t in top_labels]
        live = [c for c in range(values.shape[0]) if float(values[c, args.k - 1]) > 0]
        chosen = choose_maps(values, entropies, args.k, f"{args.seed}:{name}")
        engine = GreyInputProjections(deconvnet_for(loaded, name))
        panels = top_k_panels(loaded, result, image_of, name, [c for c, _ in chosen],
                              loaded.deprocess, engine=engine, tile=64)
        reasons = dict(chosen)
        hists = [torch.bincount(torch.tensor(top_labels[p.channel]),
                                minlength=len(FASHION_MNIST_CLASSES)).tolist() for p in panels]
        notes = [f"{reasons[p.channel]}\nH={entropies[p.channel]:.2f} bit" for p in panels]
        live_h = [entropies[c] for c in live]
        title = (f"{loaded.name} layer {paper} (`{name}`), {result.images_seen} Fashion-MNIST "
                 f"test images\ntop {args.k} projections (onto the grey image, each scaled on "
                 f"its own) | patches (receptive field) | class histogram of the top {args.k}\n"
                 f"classes: {legend}\n"
                 f"mean top-{args.k} label entropy over {len(live)} live maps "
                 f"{sum(live_h) / max(len(live_h), 1):.2f} bit (random {args.k} images: "
                 f"{baseline:.2f} bit)")
        path = render_top_k_figure(panels, out / f"layer{paper}.png", title=title, notes=notes,
                                   histograms=hists)
        record["layers"][name] = {
            "paper_layer": paper, "map_size": list(result.map_sizes[name]),
            "channels": values.shape[0], "live_maps": len(live),
            "mean_top_k_entropy_bits": round(sum(live_h) / max(len(live_h), 1), 3),
            "single_class_fraction": round(sum(h == 0 for h in live_h) / max(len(live_h), 1),
                                           3),
            "figure": str(path), "seconds": round(time.perf_counter() - tick, 1),
            "maps": [{"channel": p.channel, "reason": reasons[p.channel],
                      "entropy_bits": round(entropies[p.channel], 3),
                      "class_histogram": h, "values": [round(v, 4) for v in p.values],
                      "image_ids": p.image_ids, "labels": top_labels[p.channel]}
                     for p, h in zip(panels, hists)]}
        entry = record["layers"][name]
        print(f"layer {paper} ({name}): {len(live)}/{values.shape[0]} live maps, mean top-"
              f"{args.k} entropy {entry['mean_top_k_entropy_bits']} bit (random "
              f"{baseline:.2f}), single-class {entry['single_class_fraction']:.0%}")
    record["seconds"] = round(time.perf_counter() - start, 1)
    (out / "fig2_fashion.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out} in {record['seconds']} s")
    return record


if __name__ == "__main__":
    main()
