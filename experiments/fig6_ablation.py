"""Zeiler & Fergus (2014) Fig. 6 ablation: first layer 7x7/2 vs 11x11/4, with vs without clipping.

Four short runs on Fashion-MNIST (1 epoch each by default, to fit a 2-core budget; the main
run's settings otherwise: SGD momentum 0.9, batch 128, learning rate warmed up linearly to
0.02 over the epoch, flips, seed 0):

* ``zf-clip``: the ``fashion`` config (conv1 7x7 stride 2), feature-scale clipping at RMS 0.1;
* ``alexnet-clip``: ``fashion-alexnet-conv1`` (conv1 11x11 stride 4), clipping;
* ``zf-noclip`` and ``alexnet-noclip``: the same without clipping.

Their final weights are committed (``results/checkpoints/ablation/<run>/``, float16, with the
training log and a manifest); without ``--retrain`` they are only analysed. For each run:
the layer-1 filters (summed over the three identical grey input channels), test accuracy, and
over 2,000 test images: **dead** layer-1 feature maps (zero on every image) and **mostly dead**
ones (zero on >= 99 %), **weak** filters (RMS < 1 % of the layer's median,
:func:`deconv.activations.dead_filters`), filter RMS spread (max / median), **dominance**
(the share of the strongest layer-1 feature map in the layer's total activation energy, and
the largest over median per-map mean activation), and **distinctiveness** (mean absolute cosine
similarity between pairs of layer-1 filters: lower is more distinct).

The paper's claims: the smaller stride and filter give more distinctive features and fewer dead
ones; without feature-scale clipping one feature dominates. ``claims`` in the JSON says which
hold here.

Writes ``<out>/ablation_filters.png`` and ``<out>/ablation.json``.

Usage: ``python experiments/fig6_ablation.py [--quick] [--retrain] [--out results/fig6_ablation]``
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

import deconv
from deconv.activations import dead_feature_maps, dead_filters, filter_grid
from deconv.datasets import load_fashion_mnist
from deconv.training import TrainSettings, filter_rms
from deconv.training.checkpoints import export_run, final_checkpoint
from deconv.training.fashion_mnist import evaluate_fashion, fashion_transforms, train_fashion_mnist

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINTS = ROOT / "results" / "checkpoints" / "ablation"
RUNS = {"zf-clip": ("fashion", 0.1), "alexnet-clip": ("fashion-alexnet-conv1", 0.1),
        "zf-noclip": ("fashion", None), "alexnet-noclip": ("fashion-alexnet-conv1", None)}


def layer1_statistics(loaded, images: torch.Tensor, transform) -> dict:
    """Dead / weak / dominant / distinct statistics of layer 1 over ``images`` (uint8)."""
    conv = loaded.model.features[0]
    grey = conv.weight.detach().sum(dim=1)  # the filter a grey image sees
    loader = DataLoader(TensorDataset(images), batch_size=250,
                        collate_fn=lambda items: transform(torch.stack([i[0] for i in items])))
    dead = dead_feature_maps(loaded, loader, [1], progress=False)["features.1"]
    energy = torch.zeros(conv.out_channels, dtype=torch.float64)
    mean_act = torch.zeros(conv.out_channels, dtype=torch.float64)
    with torch.no_grad():
        for batch in loader:
            a = loaded.model.features[:2](batch).double()
            energy += a.pow(2).sum(dim=(0, 2, 3))
            mean_act += a.mean(dim=(2, 3)).sum(0)
    mean_act /= len(images)
    flat = grey.flatten(1).double()
    cos = torch.nn.functional.normalize(flat, dim=1) @ torch.nn.functional.normalize(flat, dim=1).T
    pairs = cos[~torch.eye(len(cos), dtype=torch.bool)].abs()
    rms = filter_rms(conv.weight)
    weak = dead_filters(conv.weight)
    alive = mean_act[mean_act > 0]
    return {
        "filters": conv.out_channels, "kernel": list(conv.kernel_size), "stride": list(conv.stride),
        "dead_maps": dead.dead, "mostly_dead_maps": dead.mostly_dead,
        "dead_fraction": (dead.mostly_dead) / conv.out_channels,
        "zero_activation_fraction": round(dead.zero_fraction, 4),
        "weak_filters": weak["weak"],
        "rms_max": float(rms.max()), "rms_median": float(rms.median()),
        "rms_max_over_median": float(rms.max() / rms.median()),
        "top_map_energy_share": float(energy.max() / energy.sum()),
        "top_map_mean_over_median": float(alive.max() / alive.median()) if len(alive) else 0.0,
        "mean_abs_cosine_between_filters": float(pairs.mean()),
    }


def main(argv: list[str] | None = None) -> dict:
    """Train (if asked or missing) and analyse the four runs; returns the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=2000, help="test images for statistics")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--checkpoints", default=str(DEFAULT_CHECKPOINTS))
    parser.add_argument("--retrain", action="store_true", help="train even if committed")
    parser.add_argument("--out", default=str(ROOT / "results" / "fig6_ablation"))
    parser.add_argument("--quick", action="store_true",
                        help="1 epoch on 512 images, 200 test images, in runs/quick; outputs "
                             "get a _quick suffix")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoints = Path(args.checkpoints)
    limits = (None, None)
    if args.quick:
        args.epochs, args.images, limits = 1, 200, (512, 256)
        checkpoints = ROOT / "runs" / "quick" / "ablation_export"
    start = time.perf_counter()
    test_images = load_fashion_mnist("test").tensors[0][:args.images]
    record: dict = {"epochs": args.epochs, "lr": args.lr, "seed": args.seed,
                    "images": args.images, "runs": {}}
    models = {}
    for run, (config, radius) in RUNS.items():
        dest = checkpoints / run
        if args.quick or args.retrain or not (dest / "manifest.json").is_file():
            settings = TrainSettings(epochs=args.epochs, lr=args.lr,
                                     warmup_epochs=min(1, args.epochs), clip_radius=radius,
                                     checkpoint_epochs=(args.epochs,), seed=args.seed)
            run_dir = ROOT / "runs" / ("quick/ablation" if args.quick else "ablation") / run
            train_fashion_mnist(config, settings, run_dir, *limits,
                                resume=not (args.retrain or args.quick))
            given = sys.argv[1:] if argv is None else argv
            command = "python experiments/fig6_ablation.py " + shlex.join(given)
            export_run(run_dir, dest, command, config)
        loaded = deconv.load_model("zfnet", config=config, weights=str(final_checkpoint(dest)))
        _, eval_tf = fashion_transforms(loaded)
        stats = layer1_statistics(loaded, test_images, eval_tf)
        stats["test_accuracy"] = evaluate_fashion(loaded, test_limit=limits[1])["accuracy"]
        stats.update(config=config, clip_radius=radius,
                     log=json.loads((dest / "log.json").read_text())["history"])
        record["runs"][run] = stats
        models[run] = loaded
        print(run, {k: v for k, v in stats.items() if k != "log"})
    record["claims"] = _claims(record["runs"])
    record["seconds"] = round(time.perf_counter() - start, 1)
    suffix = "_quick" if args.quick else ""
    _draw(models, record["runs"], out / f"ablation_filters{suffix}.png")
    (out / f"ablation{suffix}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record["claims"], indent=1))
    return record


def _claims(runs: dict) -> dict:
    zf, alex = runs["zf-clip"], runs["alexnet-clip"]
    noclip = [runs["zf-noclip"], runs["alexnet-noclip"]]
    clip = [zf, alex]
    return {
        "smaller stride/filter -> fewer dead features": {
            "zf": zf["dead_fraction"], "alexnet": alex["dead_fraction"],
            "holds": zf["dead_fraction"] < alex["dead_fraction"]},
        "smaller stride/filter -> more distinctive features (lower mean |cos|)": {
            "zf": zf["mean_abs_cosine_between_filters"],
            "alexnet": alex["mean_abs_cosine_between_filters"],
            "holds": zf["mean_abs_cosine_between_filters"]
            < alex["mean_abs_cosine_between_filters"]},
        "without clipping one feature dominates (top map energy share, RMS max/median)": {
            "clip": [(r["top_map_energy_share"], r["rms_max_over_median"]) for r in clip],
            "noclip": [(r["top_map_energy_share"], r["rms_max_over_median"]) for r in noclip],
            "holds": all(n["top_map_energy_share"] > c["top_map_energy_share"]
                         for n, c in zip(noclip, clip))},
    }


def _draw(models: dict, runs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(models) + 1, figsize=(3.2 * (len(models) + 1), 3.4))
    for ax, (run, loaded) in zip(axes, models.items()):
        weight = loaded.model.features[0].weight.detach().sum(dim=1, keepdim=True)
        ax.imshow(filter_grid(weight, pad=1), interpolation="nearest")
        s = runs[run]
        ax.set_title(f"{run} ({s['kernel'][0]}x{s['kernel'][0]}/{s['stride'][0]})\n"
                     f"acc {s['test_accuracy']:.3f}, dead {s['mostly_dead_maps']}/{s['filters']},"
                     f" top share {s['top_map_energy_share']:.2f}", fontsize=7)
        ax.axis("off")
    ax = axes[-1]
    for run, loaded in models.items():
        rms = np.sort(filter_rms(loaded.model.features[0].weight).numpy())[::-1]
        ax.plot(rms, label=run)
    ax.axhline(0.1, color="k", linestyle=":", linewidth=0.8)
    ax.set_title("layer-1 filter RMS (sorted); radius 0.1", fontsize=7)
    ax.legend(fontsize=6)
    fig.suptitle("Fig. 6 ablation: layer-1 filters (summed over the grey input's 3 channels)",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
