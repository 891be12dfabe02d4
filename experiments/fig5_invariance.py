"""Fig. 5 (Zeiler & Fergus 2014): invariance to vertical translation, scale and rotation.

For 5 sample photos and ``efficientnet-lite0`` (offline ImageNet weights), sweep each
transform and plot, per image, the Euclidean distance between the feature vectors of the
original and the transformed image at the first feature layer (``stem.act``, paper layer 1)
and at the top feature layer (``pool``: the 1280-d pooled head, the analogue of the paper's
layer 7), and the probability of the image's label. The "true label" is the top-1 class of the
untransformed photo (the samples have no ground truth). Content that enters from outside the
picture is the mean pixel (grey).

Writes ``fig5_invariance.png`` and ``fig5_invariance.json`` under ``--out``.

Usage: ``python experiments/fig5_invariance.py [--quick] [--out results]``
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

import deconv  # noqa: E402
from deconv.invariance import TRANSFORMS, invariance_curves, transform_image  # noqa: E402
from deconv.samples import sample_images  # noqa: E402

IMAGES = ("coffee", "camera", "chelsea", "rocket", "grace_hopper")
# The paper's axes: translation -60..60 px, scale 1..1.8 (we also shrink to 0.6), 0..360 deg.
SWEEPS = {"translate": list(range(-60, 61, 5)),
          "scale": [round(0.6 + 0.1 * i, 1) for i in range(13)],
          "rotate": list(range(0, 361, 10))}
QUICK_SWEEPS = {"translate": [-40, 0, 40], "scale": [0.8, 1.0, 1.4], "rotate": [0, 90, 180]}
TITLES = {"translate": "vertical translation (px, 224 px image)", "scale": "scale (ratio)",
          "rotate": "rotation (degrees)"}


def main(argv: list[str] | None = None) -> dict:
    """Run the three sweeps, write the figure and the JSON; returns the record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None,
                        help="output directory (default results; --quick: results/quick)")
    parser.add_argument("--quick", action="store_true", help="2 images, 3 amounts per sweep")
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--layers", nargs=2, default=["stem.act", "pool"],
                        help="first and top feature layer (module names or paper numbers)")
    args = parser.parse_args(argv)
    out = Path(args.out or ("results/quick" if args.quick else "results"))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    loaded = deconv.load_model(args.model)
    samples = sample_images(IMAGES[:2] if args.quick else IMAGES)
    images = torch.stack([loaded.preprocess(s.image) for s in samples])
    sweeps = QUICK_SWEEPS if args.quick else SWEEPS
    record = {"model": loaded.name, "source": loaded.source, "images": [s.name for s in samples],
              "label_rule": "top-1 class of the untransformed image",
              "border": "mean pixel (0 in the normalized input)", "sweeps": {}}
    curves = {}
    for kind, amounts in sweeps.items():
        c = invariance_curves(loaded, images, kind, amounts, args.layers)
        curves[kind] = c
        kept = (c.top_label == torch.tensor(c.targets).view(-1, 1)).double()
        record["sweeps"][kind] = {
            "unit": TRANSFORMS[kind], "amounts": c.amounts, "layers": c.layers,
            "distance": {layer: c.distances[layer].tolist() for layer in c.layers},
            "probability": c.probability.tolist(),
            "top1_kept_fraction": kept.mean(dim=1).tolist(),
            "labels": [loaded.categories[t] for t in c.targets]}
        print(f"{kind}: label kept in {kept.mean():.0%} of transformed images")
    record["claims"] = _claims(curves)
    record["seconds"] = round(time.perf_counter() - start, 1)
    (out / "fig5_invariance.json").write_text(json.dumps(record, indent=1) + "\n")
    _figure(curves, images, loaded, [s.name for s in samples], out / "fig5_invariance.png")
    print(f"wrote {out / 'fig5_invariance.png'} in {record['seconds']} s")
    return record


def _claims(curves) -> dict:
    """Numbers behind the paper's three claims, averaged over the images.

    * ``layer1_first_step_fraction``: layer-1 distance at the smallest non-zero amount over its
      largest distance in the sweep (near 1: layer 1 changes fully at once).
    * ``top_layer_linearity_r``: Pearson r between the top-layer distance and ``|amount|``
      (translation) or ``|scale - 1|`` (scale); near 1: quasi-linear.
    * ``top1_kept``: fraction of transformed images that keep the label (stability).
    """
    out = {}
    for kind, c in curves.items():
        amounts = torch.tensor(c.amounts, dtype=torch.float64)
        offset = (amounts - (1.0 if kind == "scale" else 0.0)).abs()
        if kind == "rotate":
            offset = torch.minimum(amounts % 360, 360 - amounts % 360)
        first = int(torch.nonzero(offset > 0)[offset[offset > 0].argmin()])
        d1, dtop = (c.distances[layer] for layer in c.layers)
        entry = {"layer1_first_step_fraction": float((d1[:, first] / d1.max(dim=1).values)
                                                     .mean()),
                 "top1_kept": float((c.top_label == torch.tensor(c.targets).view(-1, 1))
                                    .double().mean())}
        if kind != "rotate" and len(amounts) > 2:
            r = [float(torch.corrcoef(torch.stack([offset, row]))[0, 1]) for row in dtop]
            entry["top_layer_linearity_r"] = sum(r) / len(r)
        out[kind] = entry
    return out


def _figure(curves, images, loaded, names, path: Path) -> None:
    kinds = list(curves)
    fig, axes = plt.subplots(len(kinds), 4, figsize=(15, 3.3 * len(kinds)), dpi=75,
                             gridspec_kw={"width_ratios": [1.3, 1, 1, 1]})
    labels = [f"{n} ({loaded.categories[t]})" for n, t in zip(names, curves[kinds[0]].targets)]
    for row, kind in zip(axes, kinds):
        c = curves[kind]
        shown = [c.amounts[0], c.amounts[len(c.amounts) // 2], c.amounts[-1]]
        if kind == "scale":
            shown = [c.amounts[0], 1.0, c.amounts[-1]]
        strip = np.concatenate([loaded.deprocess(transform_image(images[0], kind, a))
                                .permute(1, 2, 0).numpy() for a in shown], axis=1)
        row[0].imshow(strip)
        row[0].set_title(f"{kind}: " + ", ".join(f"{a:g}" for a in shown), fontsize=9)
        row[0].axis("off")
        x = c.amounts
        for ax, layer, title in ((row[1], c.layers[0], "layer 1"), (row[2], c.layers[1],
                                                                     "top layer")):
            for i, label in enumerate(labels):
                ax.plot(x, c.distances[layer][i].numpy(), marker=".", label=label)
            ax.set_title(f"{title} (`{layer}`): Euclidean distance", fontsize=9)
            ax.set_xlabel(TITLES[kind], fontsize=8)
        for i, label in enumerate(labels):
            row[3].plot(x, c.probability[i].numpy(), marker=".", label=label)
        row[3].set_ylim(0, 1)
        row[3].set_title("P(true label)", fontsize=9)
        row[3].set_xlabel(TITLES[kind], fontsize=8)
    axes[0, 3].legend(fontsize=7, loc="upper right")
    ranges = "; ".join(f"{kind} {c.amounts[0]:g} to {c.amounts[-1]:g} "
                       f"(step {c.amounts[1] - c.amounts[0]:g})" for kind, c in curves.items())
    fig.suptitle(f"Fig. 5 analogue: {loaded.name}, 224 px, grey (mean-pixel) border; true label "
                 f"= top-1 of the untransformed photo. Ranges: {ranges}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
