"""Zeiler & Fergus (2014) Fig. 4: feature evolution during training, and how settled each layer is.

For the committed training run (``results/checkpoints/zfnet_fashion``, made by
``experiments/train_zfnet.py``), at each checkpoint epoch (the paper's 1, 2, 5, 10, 20, 30, 40,
64 scaled to the run), for a seeded random subset of the feature maps of paper layers 1-5, the
strongest activation over a seeded random subset of the Fashion-MNIST training set (10,000
images by default; the paper searches the whole training set) is found with
:func:`deconv.mining.mine_top_k` and projected to pixels with :class:`deconv.Deconvnet`
(seeded with the activation's value). Projections are summed over the three (identical grey)
input channels, cropped to the unit's receptive field (padded to full size) and shown each on
its own symmetric scale (grey = 0): one row per feature map, one column per epoch.

"How settled" a layer is at epoch e, two numbers per layer (averaged over all its maps):

* ``filter_cosine``: cosine similarity between each conv filter at epoch e and at the final
  epoch (same run, so channels correspond);
* ``top9_jaccard``: overlap (Jaccard) of each map's top-9 training images at epoch e with the
  final epoch's;
* ``cka``: linear CKA (:func:`deconv.similarity.linear_cka`) between the layer's whole rectified
  output at epoch e and at the final epoch, on a fixed seeded set of test images (500 by
  default). Unlike the two above it compares representations, not channel by channel, so it is
  blind to channels that swap roles or rotate into each other.

The paper's claim: lower layers converge within a few epochs, upper layers only after many.

Writes ``<out>/fig4_evolution.png``, ``<out>/fig4_settled.png`` and ``<out>/fig4_evolution.json``.

Usage: ``python experiments/fig4_evolution.py [--quick] [--out results/fig4]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

import deconv
from deconv.datasets import load_fashion_mnist
from deconv.deconvnet import Deconvnet
from deconv.mining import mine_top_k
from deconv.plots import crop_to_receptive_field, normalize_for_display
from deconv.probes import layer_features
from deconv.receptive_field import receptive_field
from deconv.similarity import linear_cka
from deconv.training.checkpoints import epoch_checkpoints, read_manifest
from deconv.training.fashion_mnist import fashion_transforms

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_CHECKPOINTS = ROOT / "results" / "checkpoints" / "zfnet_fashion"
LAYERS = (1, 2, 3, 4, 5)
METRICS = ("filter_cosine", "top9_jaccard", "cka")


def image_loader(images: torch.Tensor, transform, batch_size: int) -> DataLoader:
    """Batches of model-ready images made from uint8 images on the fly (ids = positions)."""
    return DataLoader(TensorDataset(images), batch_size=batch_size, shuffle=False,
                      collate_fn=lambda items: transform(torch.stack([i[0] for i in items])))


def filter_cosine(model_a: torch.nn.Module, model_b: torch.nn.Module, module: str) -> float:
    """Mean cosine similarity of corresponding conv filters of two models."""
    a = model_a.get_submodule(module).weight.detach().flatten(1).double()
    b = model_b.get_submodule(module).weight.detach().flatten(1).double()
    return float(torch.cosine_similarity(a, b, dim=1).mean())


def top_jaccard(ids_a: torch.Tensor, ids_b: torch.Tensor) -> float:
    """Mean Jaccard overlap of per-channel image-id sets ``[C, k]``."""
    scores = []
    for row_a, row_b in zip(ids_a.tolist(), ids_b.tolist()):
        a, b = set(row_a) - {-1}, set(row_b) - {-1}
        scores.append(len(a & b) / max(len(a | b), 1))
    return float(np.mean(scores))


def main(argv: list[str] | None = None) -> dict:
    """Mine, project, measure and draw; returns the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", default=str(DEFAULT_CHECKPOINTS))
    parser.add_argument("--images", type=int, default=10000, help="training images searched")
    parser.add_argument("--maps", type=int, default=4, help="random feature maps per layer")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--cka-images", type=int, default=500, help="test images for CKA")
    parser.add_argument("--seed", type=int, default=0, help="seeds the image and map subsets")
    parser.add_argument("--out", default=str(ROOT / "results" / "fig4"))
    parser.add_argument("--quick", action="store_true",
                        help="300 images, 2 maps per layer, first and last epochs; outputs get "
                             "a _quick suffix")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.maps, args.cka_images = 300, 2, 100
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    manifest = read_manifest(args.checkpoints)
    checkpoints = epoch_checkpoints(args.checkpoints)
    if args.quick:
        keep = sorted(checkpoints)
        checkpoints = {e: checkpoints[e] for e in (keep[:1] + keep[-1:])}
    epochs = sorted(checkpoints)
    final_epoch = epochs[-1]
    models = {e: deconv.load_model("zfnet", config=manifest["config"], weights=str(p))
              for e, p in checkpoints.items()}
    final = models[final_epoch]
    names = {layer: deconv.resolve_layer(final, layer) for layer in LAYERS}
    convs = {layer: f"features.{int(names[layer].split('.')[1]) - 1}" for layer in LAYERS}

    gen = torch.Generator().manual_seed(args.seed)
    train_images = load_fashion_mnist("train").tensors[0]
    subset = torch.randperm(len(train_images), generator=gen)[:args.images]
    images = train_images[subset]
    _, eval_tf = fashion_transforms(final)
    chosen = {}
    for layer in LAYERS:
        channels = final.model.get_submodule(convs[layer]).out_channels
        chosen[layer] = sorted(torch.randperm(channels, generator=gen)[:args.maps].tolist())
    fields = {layer: receptive_field(final, layer, input_size=final.input_size)
              for layer in LAYERS}

    cells: dict[tuple[int, int], np.ndarray] = {}  # (row, column) -> grey image in [0, 1]
    settled = {str(layer): {m: [] for m in METRICS} for layer in LAYERS}
    test_images = load_fashion_mnist("test").tensors[0]
    cka_images = test_images[torch.randperm(len(test_images), generator=gen)[:args.cka_images]]

    def representations(loaded) -> dict[str, torch.Tensor]:
        feats, _ = layer_features(loaded, cka_images, [names[layer] for layer in LAYERS],
                                  batch_transform=eval_tf, grid=final.input_size)
        return feats

    final_features = representations(final)
    strongest = {str(layer): [] for layer in LAYERS}
    mined_final = mine_top_k(final, image_loader(images, eval_tf, args.batch_size),
                             list(LAYERS), k=9, progress=False)
    for column, epoch in enumerate(epochs):
        loaded = models[epoch]
        mined = mined_final if epoch == final_epoch else mine_top_k(
            loaded, image_loader(images, eval_tf, args.batch_size), list(LAYERS), k=9,
            progress=False)
        engine = Deconvnet(loaded)
        features = final_features if epoch == final_epoch else representations(loaded)
        for li, layer in enumerate(LAYERS):
            name = names[layer]
            settled[str(layer)]["filter_cosine"].append(
                filter_cosine(loaded.model, final.model, convs[layer]))
            settled[str(layer)]["top9_jaccard"].append(
                top_jaccard(mined.image_ids[name], mined_final.image_ids[name]))
            settled[str(layer)]["cka"].append(linear_cka(features[name], final_features[name]))
            width = mined.map_sizes[name][1]
            ids = mined.image_ids[name][chosen[layer], 0]
            pos = mined.positions[name][chosen[layer], 0]
            batch = eval_tf(images[ids.clamp(min=0)])
            units = torch.stack([torch.arange(len(ids)), torch.tensor(chosen[layer]),
                                 pos // width, pos % width], dim=1)
            projections = engine.project(batch, name, units).sum(dim=1, keepdim=True)
            values = mined.values[name][chosen[layer], 0]
            strongest[str(layer)].append([round(float(v), 4) for v in values])
            for m, unit in enumerate(units.tolist()):
                crop = crop_to_receptive_field(projections[m], fields[layer], unit[2], unit[3],
                                               pad=True)
                shown = normalize_for_display(crop)[0].numpy()
                if not float(values[m]) > 0:  # dead at this epoch: nothing to project
                    shown = np.full_like(shown, 0.5)
                cells[(li * args.maps + m, column)] = shown

    rows = len(LAYERS) * args.maps
    suffix = "_quick" if args.quick else ""
    _draw_grid(cells, rows, epochs, chosen, out / f"fig4_evolution{suffix}.png", args.maps)
    _draw_settled(settled, epochs, out / f"fig4_settled{suffix}.png", args.cka_images)
    record = {"checkpoints": str(Path(args.checkpoints)), "epochs": epochs,
              "paper_epochs": [1, 2, 5, 10, 20, 30, 40, 64], "images_searched": args.images,
              "cka_test_images": args.cka_images,
              "maps": {str(k): v for k, v in chosen.items()}, "layers": names,
              "strongest_activation": strongest, "settled": settled,
              "claim": "lower layers converge within a few epochs, upper layers only later",
              "claim_holds": _claim_holds(settled),
              "seconds": round(time.perf_counter() - start, 1), "quick": args.quick}
    (out / f"fig4_evolution{suffix}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({"settled": settled, "claim_holds": record["claim_holds"]}, indent=1))
    return record


def _claim_holds(settled: dict) -> dict:
    """Per metric: is layer 1 more settled than layer 5 at the first checkpoint, and is the
    ordering of the first checkpoint's values from layer 1 to 5 non-increasing?"""
    verdict = {}
    for metric in METRICS:
        first = [settled[str(layer)][metric][0] for layer in LAYERS]
        verdict[metric] = {"first_checkpoint": [round(v, 3) for v in first],
                           "layer1_above_layer5": first[0] > first[-1],
                           "monotone": all(a >= b for a, b in zip(first, first[1:]))}
    return verdict


def _draw_grid(cells, rows: int, epochs: list[int], chosen: dict, path: Path,
               maps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, len(epochs), figsize=(0.9 * len(epochs) + 1, 0.9 * rows),
                             squeeze=False)
    for (r, c), image in cells.items():
        ax = axes[r][c]
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    for r in range(rows):
        for c in range(len(epochs)):
            axes[r][c].set_xticks([])
            axes[r][c].set_yticks([])
        layer = LAYERS[r // maps]
        axes[r][0].set_ylabel(f"L{layer} #{chosen[layer][r % maps]}", fontsize=7)
    for c, epoch in enumerate(epochs):
        axes[0][c].set_title(f"epoch {epoch}", fontsize=8)
    fig.suptitle("Fig. 4: feature evolution", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / rows))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _draw_settled(settled: dict, epochs: list[int], path: Path, cka_images: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3))
    titles = {"filter_cosine": "filter cosine", "top9_jaccard": "top-9 overlap (Jaccard)",
              "cka": f"linear CKA ({cka_images} test images)"}
    for ax, metric in zip(axes, METRICS):
        for layer in LAYERS:
            ax.plot(epochs, settled[str(layer)][metric], marker="o", label=f"layer {layer}")
        ax.set_xlabel("epoch")
        ax.set_title(f"{titles[metric]} with the final epoch", fontsize=9)
        ax.set_ylim(-0.05, 1.05)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
