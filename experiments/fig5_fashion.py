"""Fig. 5 (Zeiler & Fergus 2014) on Fashion-MNIST: invariance of the trained ZFNet, 500 images.

The first ``--images`` (500) Fashion-MNIST test images go through ``zfnet-fashion`` (64 px) under
vertical translation (-20..20 px, the paper's +-60 px at 224 px scaled to 64 px), scale
(0.6..1.8) and rotation (0..360 degrees). Per step: the Euclidean distance between the feature
vectors of the original and the transformed image at layer 1 (``features.1``, rectified conv1)
and layer 7 (``classifier.4``, rectified fc7), and p(true label) (the dataset's labels), as
the mean over the images with the central 95% of the images shaded (2.5th-97.5th
percentiles); the JSON also has the 95% confidence interval of the mean (1.96 standard
errors). Thin lines in the probability panels are the per-class means.

What comes in from outside the picture is black, the Fashion-MNIST background: the transforms
act on pixels in [0, 1] in front of the model's normalization (a grey border would frame every
moved item with an edge the network never saw in training). The five-photo version with
``efficientnet-lite0`` is ``experiments/fig5_invariance.py``.

Writes ``fig5_fashion.png`` and ``fig5_fashion.json`` under ``--out``.

Usage: ``python experiments/fig5_fashion.py [--quick] [--out results]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import deconv  # noqa: E402
from deconv.datasets import (  # noqa: E402
    FASHION_MNIST_CLASSES,
    fashion_batch_transform,
    load_fashion_mnist,
)
from deconv.invariance import invariance_curves, transform_image  # noqa: E402

SWEEPS = {"translate": list(range(-20, 21, 2)),
          "scale": [round(0.6 + 0.1 * i, 1) for i in range(13)],
          "rotate": list(range(0, 361, 15))}
QUICK_SWEEPS = {"translate": [-12, 0, 12], "scale": [0.8, 1.0, 1.4], "rotate": [0, 90, 180]}
TITLES = {"translate": "vertical translation (px, 64 px image)", "scale": "scale (ratio)",
          "rotate": "rotation (degrees)"}
LAYERS = ("net.features.1", "net.classifier.4")


class PixelInput(nn.Module):
    """``net`` with its input normalization in front: takes pixels in [0, 1] (so a transform's
    zero border is black, the dataset's background)."""

    def __init__(self, net: nn.Module, mean: float, std: float):
        super().__init__()
        self.net, self.mean, self.std = net, mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def band(values: torch.Tensor) -> dict:
    """Mean, central 95% of the images and the 95% CI of the mean, per step (``[N, A]``)."""
    v = values.double()
    mean = v.mean(0)
    half = 1.96 * v.std(0) / v.shape[0] ** 0.5
    low, high = torch.quantile(v, torch.tensor([0.025, 0.975], dtype=torch.float64), dim=0)
    return {"mean": mean.tolist(), "p2.5": low.tolist(), "p97.5": high.tolist(),
            "mean_ci95": [(mean - half).tolist(), (mean + half).tolist()]}


def main(argv: list[str] | None = None) -> dict:
    """Run the three sweeps, write the figure and the JSON; returns the record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None,
                        help="output directory (default results; --quick: results/quick)")
    parser.add_argument("--images", type=int, default=500, help="first N test images")
    parser.add_argument("--quick", action="store_true", help="60 images, 3 amounts per sweep")
    args = parser.parse_args(argv)
    if args.quick:
        args.images = 60
    out = Path(args.out or ("results/quick" if args.quick else "results"))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    loaded = deconv.load_model("zfnet-fashion")
    images, labels = load_fashion_mnist("test", limit=args.images).tensors
    pixels = fashion_batch_transform(loaded.input_size, mean=0.0, std=1.0)(images)
    model = PixelInput(loaded.model, float(loaded.mean[0]), float(loaded.std[0])).eval()
    sweeps = QUICK_SWEEPS if args.quick else SWEEPS
    targets = labels.tolist()
    record = {"model": loaded.name, "source": loaded.source, "images": len(targets),
              "label_rule": "true labels of the test set", "border": "black (pixel value 0)",
              "layers": {"layer 1": "features.1", "layer 7": "classifier.4"},
              "band": "shaded: 2.5th-97.5th percentile over images; mean_ci95: mean +- 1.96 SE",
              "sweeps": {}}
    curves = {}
    for kind, amounts in sweeps.items():
        tick = time.perf_counter()
        c = invariance_curves(model, pixels, kind, amounts, list(LAYERS), targets=targets)
        curves[kind] = c
        kept = (c.top_label == labels.view(-1, 1)).double()
        record["sweeps"][kind] = {
            "amounts": c.amounts,
            "distance": {short: band(c.distances[name])
                         for short, name in zip(("layer 1", "layer 7"), LAYERS)},
            "probability": band(c.probability),
            "top1_kept": kept.mean(0).tolist(),
            "probability_per_class": {FASHION_MNIST_CLASSES[k]: c.probability[labels == k]
                                      .mean(0).tolist() for k in range(10)
                                      if bool((labels == k).any())},
            "seconds": round(time.perf_counter() - tick, 1)}
        print(f"{kind}: top-1 kept in {kept.mean():.1%} of transformed images "
              f"({record['sweeps'][kind]['seconds']} s)")
    record["claims"] = claims(curves, labels)
    for kind, entry in record["claims"].items():
        print(f"  {kind}: {entry}")
    record["seconds"] = round(time.perf_counter() - start, 1)
    (out / "fig5_fashion.json").write_text(json.dumps(record, indent=1) + "\n")
    figure(curves, pixels, labels, out / "fig5_fashion.png")
    print(f"wrote {out / 'fig5_fashion.png'} in {record['seconds']} s")
    return record


def claims(curves, labels: torch.Tensor) -> dict:
    """The paper's three claims as numbers (mean curves over the images).

    * ``layer1_first_step_fraction``: mean layer-1 distance at the smallest non-zero amount
      over its largest value in the sweep (near 1: layer 1 changes fully at once).
    * ``layer7_first_step_fraction``: the same for layer 7.
    * ``layer7_linearity_r``: Pearson r between the mean layer-7 distance and ``|amount|``
      (translation) or ``|scale - 1|`` (scale).
    * ``top1_kept``: fraction of transformed images (all steps) that keep the true label;
      ``top1_kept_at_extremes``: at the two ends of the sweep (for rotation: at 90 and 180).
    """
    out = {}
    for kind, c in curves.items():
        amounts = torch.tensor(c.amounts, dtype=torch.float64)
        offset = (amounts - (1.0 if kind == "scale" else 0.0)).abs()
        if kind == "rotate":
            offset = torch.minimum(amounts % 360, 360 - amounts % 360)
        nonzero = offset > 0
        first = int(torch.nonzero(nonzero)[offset[nonzero].argmin()])
        kept = (c.top_label == labels.view(-1, 1)).double()
        entry = {}
        for short, name in zip(("layer1", "layer7"), LAYERS):
            mean = c.distances[name].double().mean(0)
            entry[f"{short}_first_step_fraction"] = round(float(mean[first] / mean.max()), 3)
        if kind != "rotate" and len(amounts) > 2:
            mean7 = c.distances[LAYERS[1]].double().mean(0)
            entry["layer7_linearity_r"] = round(float(torch.corrcoef(
                torch.stack([offset, mean7]))[0, 1]), 3)
        entry["top1_kept"] = round(float(kept.mean()), 3)
        if kind == "rotate":
            at = [c.amounts.index(a) for a in (90.0, 180.0) if a in c.amounts]
        else:
            at = [0, len(c.amounts) - 1]
        entry["top1_kept_at_extremes"] = {f"{c.amounts[i]:g}": round(float(kept[:, i].mean()),
                                                                        3) for i in at}
        out[kind] = entry
    return out


def figure(curves, pixels: torch.Tensor, labels: torch.Tensor, path: Path) -> None:
    """Three rows (transforms) x four panels: examples, layer 1, layer 7, p(true label)."""
    kinds = list(curves)
    fig, axes = plt.subplots(len(kinds), 4, figsize=(16, 3.4 * len(kinds)), dpi=70,
                             gridspec_kw={"width_ratios": [1.3, 1, 1, 1]})
    axes = np.atleast_2d(axes)
    examples = [int((labels == k).nonzero()[0]) for k in (0, 1, 5, 9) if bool((labels == k)
                                                                            .any())]
    colours = plt.get_cmap("tab10").colors
    n = pixels.shape[0]
    for row, kind in zip(axes, kinds):
        c = curves[kind]
        shown = [c.amounts[0], 1.0 if kind == "scale" else c.amounts[len(c.amounts) // 2],
                 c.amounts[-1]]
        if kind == "rotate":
            shown = [a for a in (0.0, 90.0, 180.0) if a in c.amounts] or shown
        strip = np.concatenate([np.concatenate(
            [transform_image(pixels[i], kind, a)[0].numpy() for a in shown], axis=1)
            for i in examples], axis=0)
        row[0].imshow(strip, cmap="gray", vmin=0, vmax=1)
        row[0].set_title(f"{kind}: " + ", ".join(f"{a:g}" for a in shown), fontsize=9)
        row[0].axis("off")
        x = np.array(c.amounts)
        for ax, name, title in ((row[1], LAYERS[0], "layer 1 (`features.1`)"),
                                (row[2], LAYERS[1], "layer 7 (`classifier.4`)")):
            d = c.distances[name].double()
            low, high = torch.quantile(d, torch.tensor([0.025, 0.975], dtype=torch.float64),
                                       dim=0)
            ax.fill_between(x, low.numpy(), high.numpy(), color="tab:blue", alpha=0.25,
                            label="central 95% of images")
            ax.plot(x, d.mean(0).numpy(), color="tab:blue", marker=".", label=f"mean, n={n}")
            ax.set_title(f"{title}: Euclidean distance", fontsize=9)
            ax.set_xlabel(TITLES[kind], fontsize=8)
            ax.set_ylim(bottom=0)
        p = c.probability.double()
        low, high = torch.quantile(p, torch.tensor([0.025, 0.975], dtype=torch.float64), dim=0)
        row[3].fill_between(x, low.numpy(), high.numpy(), color="black", alpha=0.12)
        for k in range(10):
            if bool((labels == k).any()):
                row[3].plot(x, p[labels == k].mean(0).numpy(), color=colours[k], lw=0.9,
                            label=FASHION_MNIST_CLASSES[k])
        row[3].plot(x, p.mean(0).numpy(), color="black", lw=2.2, marker=".", label="all")
        row[3].set_ylim(0, 1)
        row[3].set_title("p(true label): mean (black), per class (thin)", fontsize=9)
        row[3].set_xlabel(TITLES[kind], fontsize=8)
    axes[0, 1].legend(fontsize=7, loc="upper right")
    axes[0, 3].legend(fontsize=6, loc="lower left", ncol=2)
    fig.suptitle(f"Fig. 5 on Fashion-MNIST: zfnet-fashion, {n} test images, 64 px, black "
                 "border; shaded: 2.5th-97.5th percentile over the images", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
