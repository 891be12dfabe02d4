"""One hed-vgg16 unit projected with the three backward rules: deconvnet, guided backprop, gradient.

The README's worked example (``experiments/project_example.py``) projects the strongest layer-5
unit of ``hed-vgg16`` on the coffee photo with the deconvnet; its projection shows vertical
stripes. Here the same unit (found again the same way) is projected by
:class:`deconv.deconvnet.GenericDeconvnet` with ``rule="deconvnet"`` (rectify the backward signal,
LRN/BN skipped), ``rule="guided"`` (also mask by the forward ReLU pattern) and
``rule="gradient"`` (plain autograd), all seeded with the unit's activation, side by side: the
full image and the crop to the unit's receptive field, each on its own symmetric scale (the rules
differ in magnitude; the figure compares patterns).

Stripe measure, per rule, on the channel-summed projection inside the receptive field:
``column_variance_share`` = variance of the column means / total variance (1 when every column
is constant: pure vertical stripes; about 1 / rows for unstructured noise) and the same for rows.

Writes ``<out>/projection_rules_hed-vgg16_layer5.png`` and ``.json``.

Usage: ``python experiments/projection_rules.py [--quick] [--out results]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import deconv
from deconv.deconvnet import GenericDeconvnet
from deconv.deconvnet.strongest import project_strongest
from deconv.plots import crop_to_receptive_field
from deconv.receptive_field import receptive_field
from deconv.samples import sample_images

RULES = ("deconvnet", "guided", "gradient")
TITLES = {"deconvnet": "deconvnet (Zeiler & Fergus)", "guided": "guided backprop",
          "gradient": "gradient"}


def variance_shares(projection: torch.Tensor) -> dict[str, float]:
    """Share of the variance of a 2-D map explained by its column means and by its row means."""
    m = projection.double()
    total = float(m.var(unbiased=False))
    if total == 0:
        return {"column_variance_share": float("nan"), "row_variance_share": float("nan")}
    return {"column_variance_share": float(m.mean(dim=0).var(unbiased=False)) / total,
            "row_variance_share": float(m.mean(dim=1).var(unbiased=False)) / total}


def main(argv: list[str] | None = None) -> dict:
    """Project the unit with the three rules, draw, measure; returns the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="output directory (default: results)")
    parser.add_argument("--layer", default="5", help="paper layer number or module name")
    parser.add_argument("--quick", action="store_true", help="112 px input, results/quick")
    args = parser.parse_args(argv)
    out = Path(args.out or ("results/quick" if args.quick else "results"))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    loaded = deconv.load_model("hed-vgg16")
    image = loaded.preprocess(sample_images(["coffee"])[0].image, 112 if args.quick else None)
    layer = int(args.layer) if args.layer.isdigit() else args.layer
    found = project_strongest(loaded, image, layer, engine="explicit")
    units, module = found["units"], found["layer"]
    batch = image[None]
    projections = {rule: GenericDeconvnet(loaded, rule=rule).project(batch, module, units)[0]
                   for rule in RULES}
    explicit_vs_generic = float((projections["deconvnet"] - found["projections"][0]).abs().max()
                                / found["projections"][0].abs().max())
    field = receptive_field(loaded, module, input_size=image.shape[-1])
    _, channel, y, x = units[0].tolist()
    crops = {rule: crop_to_receptive_field(p, field, y, x).sum(dim=0)
             for rule, p in projections.items()}
    shares = {rule: variance_shares(c) for rule, c in crops.items()}
    stem = f"projection_rules_hed-vgg16_layer{str(args.layer).replace('.', '_')}"
    suffix = "_quick" if args.quick else ""
    record = {"model": "hed-vgg16", "image": "coffee", "layer": str(args.layer),
              "module": module, "unit": units[0].tolist(), "activation": float(found["values"][0]),
              "seed": "activation", "input_size": int(image.shape[-1]),
              "crop_size": list(crops["deconvnet"].shape),
              "deconvnet_generic_vs_explicit_max_relative_difference": explicit_vs_generic,
              "stripes": shares, "seconds": round(time.perf_counter() - start, 1),
              "quick": args.quick}
    _draw(loaded, image, projections, crops, record, field, out / f"{stem}{suffix}.png")
    (out / f"{stem}{suffix}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))
    return record


def _draw(loaded, image, projections, crops, record, field, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(RULES) + 1, figsize=(3.2 * (len(RULES) + 1), 6.4))
    picture = loaded.deprocess(image[None])[0].permute(1, 2, 0).clamp(0, 1).numpy()
    _, _, y, x = record["unit"]
    axes[0][0].imshow(picture)
    box = crop_to_receptive_field(torch.zeros(1, *image.shape[-2:]), field, y, x)
    y0, x0, y1, x1 = field.box(y, x)
    axes[0][0].add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                       color="yellow", lw=1.5))
    axes[0][0].set_title(f"coffee, unit {record['unit'][1:]}\nof {record['module']} "
                         f"(value {record['activation']:.0f})", fontsize=8)
    axes[1][0].imshow(crop_to_receptive_field(torch.from_numpy(picture).permute(2, 0, 1), field,
                                              y, x).permute(1, 2, 0).numpy())
    axes[1][0].set_title(f"receptive field crop {box.shape[-2]}x{box.shape[-1]}", fontsize=8)
    for column, rule in enumerate(RULES, start=1):
        full = projections[rule].sum(dim=0)
        for row, m in enumerate((full, crops[rule])):
            peak = float(m.abs().max()) or 1.0
            shown = axes[row][column].imshow(m.numpy(), cmap="bwr", vmin=-peak, vmax=peak)
            fig.colorbar(shown, ax=axes[row][column], fraction=0.046, pad=0.02)
        s = record["stripes"][rule]
        axes[0][column].set_title(f"{TITLES[rule]}\n(sum over RGB; own symmetric scale)",
                                  fontsize=8)
        axes[1][column].set_title(f"crop: column-mean variance share "
                                  f"{s['column_variance_share']:.2f}\n(row-mean share "
                                  f"{s['row_variance_share']:.2f})", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"hed-vgg16 layer {record['layer']} ({record['module']}): one unit, three "
                 "backward rules (GenericDeconvnet(rule=...), seeded with the activation)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
