"""Zeiler & Fergus (2014) Table 7 analogue: a linear probe on each layer of the trained ZFNet.

For the committed Fashion-MNIST ZFNet (``results/checkpoints/zfnet_fashion``, final epoch) and,
as a control, the same architecture at its random initialization (seed 0), a multinomial
logistic-regression probe (:func:`deconv.probes.probe_layers`, L2 1e-3, L-BFGS) is fitted on
each paper layer's output (layers 1-5: rectified conv maps average-pooled to 2x2 cells; 6, 7:
the rectified fc outputs) and on the raw 28 px pixels as a baseline. Data: a seeded random
subset of 5,000 training images to fit and 2,000 test images to score (subsampled so the
whole experiment runs in about a minute on 2 CPU cores).

The paper (Caltech-101, linear SVM on ImageNet-trained features): layer 1 44.8 %, layer 5
86.2 %: accuracy rises with depth.

Writes ``<out>/table7_probes.json``, ``<out>/table7_probes.md`` and ``<out>/table7_probes.png``.

Usage: ``python experiments/table7_probes.py [--quick] [--out results/table7]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

import deconv
from deconv.datasets import load_fashion_mnist
from deconv.probes import fit_linear_probe, probe_layers
from deconv.training.checkpoints import final_checkpoint, read_manifest
from deconv.training.fashion_mnist import fashion_transforms

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINTS = ROOT / "results" / "checkpoints" / "zfnet_fashion"
LAYERS = (1, 2, 3, 4, 5, 6, 7)
#: Zeiler & Fergus (2014), Table 7, Caltech-101 (30 images per class), linear SVM.
PAPER_CALTECH101 = {"1": 44.8, "5": 86.2}


def subset(data: TensorDataset, count: int, generator: torch.Generator) -> TensorDataset:
    """A seeded random subset of an in-memory dataset."""
    index = torch.randperm(len(data), generator=generator)[:count]
    return TensorDataset(*(t[index] for t in data.tensors))


def main(argv: list[str] | None = None) -> dict:
    """Fit the probes and write the table; returns the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", default=str(DEFAULT_CHECKPOINTS))
    parser.add_argument("--train-images", type=int, default=5000)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--l2", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "results" / "table7"))
    parser.add_argument("--quick", action="store_true", help="500 / 300 images, 50 iterations")
    args = parser.parse_args(argv)
    max_iter = 300
    if args.quick:
        args.train_images, args.test_images, max_iter = 500, 300, 50
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    manifest = read_manifest(args.checkpoints)
    path = final_checkpoint(args.checkpoints)
    gen = torch.Generator().manual_seed(args.seed)
    train_set = subset(load_fashion_mnist("train"), args.train_images, gen)
    test_set = subset(load_fashion_mnist("test"), args.test_images, gen)

    pixels = fit_linear_probe(train_set.tensors[0].flatten(1).float(), train_set.tensors[1],
                              10, args.l2, max_iter)
    baseline = {"train_accuracy": pixels.accuracy(train_set.tensors[0].flatten(1).float(),
                                                  train_set.tensors[1]),
                "test_accuracy": pixels.accuracy(test_set.tensors[0].flatten(1).float(),
                                                 test_set.tensors[1]), "dims": 784}
    results = {}
    for name, weights in (("trained", str(path)), ("random_init", None)):
        loaded = deconv.load_model("zfnet", config=manifest["config"], weights=weights, seed=0)
        _, eval_tf = fashion_transforms(loaded)
        results[name] = probe_layers(loaded, train_set, test_set, list(LAYERS), eval_tf,
                                     grid=2, l2=args.l2, max_iter=max_iter)
    record = {"checkpoint": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT)
              else str(path), "train_images": args.train_images,
              "test_images": args.test_images, "l2": args.l2, "grid": 2,
              "pixels": baseline, "layers": results,
              "paper_caltech101_linear_svm": PAPER_CALTECH101,
              "rises_with_depth_1_to_5": all(
                  results["trained"][str(a)]["test_accuracy"]
                  <= results["trained"][str(b)]["test_accuracy"]
                  for a, b in zip(LAYERS[:4], LAYERS[1:5])),
              "seconds": round(time.perf_counter() - start, 1), "quick": args.quick}
    suffix = "_quick" if args.quick else ""
    (out / f"table7_probes{suffix}.json").write_text(json.dumps(record, indent=1) + "\n")
    (out / f"table7_probes{suffix}.md").write_text(_markdown(record))
    _draw(record, out / f"table7_probes{suffix}.png")
    print(_markdown(record))
    return record


def _markdown(record: dict) -> str:
    lines = ["| layer | module | dims | trained: test acc % | random init: test acc % |"
             " paper (Caltech-101) % |", "|---|---|---|---|---|---|",
             f"| pixels | - | 784 | {100 * record['pixels']['test_accuracy']:.1f} | - | - |"]
    for layer in LAYERS:
        t, r = record["layers"]["trained"][str(layer)], record["layers"]["random_init"][
            str(layer)]
        paper = record["paper_caltech101_linear_svm"].get(str(layer), "")
        lines.append(f"| {layer} | {t['module']} | {t['dims']} | {100 * t['test_accuracy']:.1f}"
                     f" | {100 * r['test_accuracy']:.1f} | {paper} |")
    lines.append(f"\n{record['train_images']} training / {record['test_images']} test images, "
                 f"logistic regression (L2 {record['l2']}), conv maps pooled to 2x2.\n")
    return "\n".join(lines) + "\n"


def _draw(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, style in (("trained", "o-"), ("random_init", "s--")):
        acc = [100 * record["layers"][name][str(layer)]["test_accuracy"] for layer in LAYERS]
        ax.plot(LAYERS, acc, style, label=f"Fashion-MNIST ZFNet, {name.replace('_', ' ')}")
    paper = record["paper_caltech101_linear_svm"]
    ax.plot([int(k) for k in paper], list(paper.values()), "k^", label="paper, Caltech-101")
    ax.axhline(100 * record["pixels"]["test_accuracy"], color="grey", linestyle=":",
               label="pixels")
    ax.set_xlabel("layer")
    ax.set_ylabel("linear probe test accuracy (%)")
    ax.legend(fontsize=7)
    ax.set_title("Table 7: linear probes per layer", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
