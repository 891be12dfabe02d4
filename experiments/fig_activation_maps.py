"""The feature maps themselves (CS231n's "activations of conv1 and conv5"), sparsity noted.

For one sample photo (default ``chelsea``, the cat) at the model's input size, draws every
feature map of two layers (default: paper layers 1 and 5 of ``hed-vgg16``, the ReLUs after
conv1_2 and conv5_3) as a grid, each map scaled to its own [0, max] (black = 0; padding white),
and notes the sparsity: the fraction of activations that are exactly zero, and how many maps
are zero everywhere on this image. Writes ``results/activation_maps/<model>_<image>_layer<L>.png``
and ``activation_maps.json``.

Usage: ``python experiments/fig_activation_maps.py [--quick] [--layers 1 5] [--image chelsea]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib.pyplot as plt

import deconv
from deconv.activations import feature_maps, map_grid, sparsity
from deconv.layers import resolve_layer
from deconv.samples import sample_images


def main(argv: list[str] | None = None) -> dict:
    """Draw the maps and record their sparsity; returns the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hed-vgg16")
    parser.add_argument("--image", default="chelsea", help="sample photo name")
    parser.add_argument("--layers", nargs="+", default=["1", "5"],
                        help="paper layer numbers or module names")
    parser.add_argument("--max-maps", type=int, default=512, help="draw at most this many maps")
    parser.add_argument("--out", default=None,
                        help="output directory (default results/activation_maps; "
                             "--quick: results/quick/activation_maps)")
    parser.add_argument("--quick", action="store_true", help="112 px input, 64 maps")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = "results/quick/activation_maps" if args.quick else "results/activation_maps"
    loaded = deconv.load_model(args.model)
    size = 112 if args.quick else loaded.input_size
    image = loaded.preprocess(sample_images([args.image])[0].image, size=size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"model": args.model, "image": args.image, "input_size": size,
              "zero": "activation exactly 0", "layers": {}}
    for layer in args.layers:
        layer = int(layer) if layer.isdigit() and int(layer) in loaded.layers else layer
        name = resolve_layer(loaded, layer)
        maps = feature_maps(loaded, image, name).cpu()
        shown = maps[:min(args.max_maps, 64 if args.quick else args.max_maps)]
        zero_maps = int((maps.flatten(1).abs().amax(1) == 0).sum())
        frac = sparsity(maps)
        grid = map_grid(shown, normalize="per-map")
        label = f"layer {layer} ({name})" if isinstance(layer, int) else name
        fig, ax = plt.subplots(figsize=(6, 6 * grid.shape[0] / grid.shape[1] + 0.5), dpi=100)
        cmap = plt.get_cmap("gray").copy()
        cmap.set_bad("white")
        ax.imshow(grid, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(f"{args.model} {label}, {args.image}: {len(shown)} of {maps.shape[0]} maps "
                     f"{maps.shape[1]}x{maps.shape[2]}\nzeros: {frac:.1%} of activations, "
                     f"{zero_maps} maps all-zero (each map scaled to its own max)", fontsize=8)
        fig.tight_layout()
        stem = f"{args.model}_{args.image}_layer{layer}".replace(".", "-")
        path = out / f"{stem}.png"
        fig.savefig(path)
        plt.close(fig)
        record["layers"][str(layer)] = {"module": name, "shape": list(maps.shape),
                                        "zero_fraction": round(frac, 4),
                                        "all_zero_maps": zero_maps, "figure": str(path)}
        print(f"{label}: {maps.shape[0]} maps {tuple(maps.shape[1:])}, zeros {frac:.1%}, "
              f"{zero_maps} all-zero maps -> {path}")
    (out / "activation_maps.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


if __name__ == "__main__":
    main()
