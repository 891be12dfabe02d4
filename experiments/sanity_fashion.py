"""Adebayo et al. (2018) sanity checks on the trained Fashion-MNIST ZFNet (max-pools with switches).

The photo run of ``experiments/compare_captum.py`` uses efficientnet-lite0, which has no
max-pool: there the deconvnet map is the same for every photo and the check says nothing about
the deconvnet. Here, on ``zfnet-fashion`` (conv / ReLU / max-pool / LRN, the paper's layer
types), the first ``--images`` test images (64 by default) are explained for their true class by
the deconvnet (ours), guided backprop (ours), the gradient (captum Saliency) and Grad-CAM (captum,
last conv layer ``features.12``), and:

* **cascading randomization**: the eight layers with weights are re-drawn one by one from the
  top (fc8 first, conv1 last; scale-matched Gaussian noise, seed 0,
  :func:`deconv.metrics.cascading_randomization`); per step, the mean Spearman rank correlation
  of ``|map|`` (and of the signed map) and the SSIM with the trained model's map, and the 95 %
  bootstrap interval of the mean over images;
* **input dependence**: image i's class explained on image i + 1 (:func:`input_dependence`);
* **what the deconvnet depends on**: image i run with the max-pool switches of image i + 1
  (:func:`deconv.metrics.switches.transplanted_switches`) and compared with image i + 1's own
  map. Equal to rounding: the map is a function of the switches (and the weights) alone. The
  same for guided backprop, which also depends on the forward ReLU pattern. With the fraction
  of the switches that two neighbouring images share, per pool.

Writes ``<out>/sanity_zfnet-fashion.png`` (curves), ``<out>/sanity_maps_zfnet-fashion.png``
(maps of two images at every step, each on its own 99.5th-percentile scale) and
``<out>/sanity_zfnet-fashion.json``.

Usage: ``python experiments/sanity_fashion.py [--quick] [--images 64] [--out results/compare]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import deconv
from deconv.datasets import fashion_batch_transform, load_fashion_mnist
from deconv.methods import attribute
from deconv.metrics import cascading_randomization, input_dependence
from deconv.metrics.sanity_check import map_similarity
from deconv.metrics.switches import switch_agreement, transplanted_switches

ROOT = Path(__file__).resolve().parent.parent
METHODS = {"deconvnet": "deconvnet", "guided-backprop": "guided backprop",
           "captum-saliency": "gradient", "captum-layer-gradcam": "Grad-CAM"}
MODEL = "zfnet-fashion"
PAPER_NAMES = {"classifier.6": "fc8", "classifier.3": "fc7", "classifier.0": "fc6",
               "features.12": "conv5", "features.10": "conv4", "features.8": "conv3",
               "features.4": "conv2", "features.0": "conv1"}


def step_label(step: str) -> str:
    """``"+fc8 (classifier.6)"`` for a randomization step (``"trained"`` unchanged)."""
    return f"+{PAPER_NAMES[step]} ({step})" if step in PAPER_NAMES else step


def bootstrap_mean_ci(values: np.ndarray, draws: int = 2000, seed: int = 0
                      ) -> tuple[float | None, float | None, float | None]:
    """Mean and 95 % percentile-bootstrap interval of the finite values (None if none)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return None, None, None
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(draws, v.size))].mean(axis=1)
    return (round(float(v.mean()), 4), round(float(np.percentile(means, 2.5)), 4),
            round(float(np.percentile(means, 97.5)), 4))


def switch_dependence(loaded, images: torch.Tensor, targets: torch.Tensor) -> dict:
    """Image i run with image i+1's switches vs image i+1's own map, deconvnet and guided."""
    donor, donor_targets = images.roll(-1, dims=0), targets.roll(-1)
    out = {}
    for name in ("deconvnet", "guided-backprop"):
        own = attribute(name, loaded, donor, donor_targets, reduction="none",
                        chunk_size=len(images))
        with transplanted_switches(loaded.model, donor):
            moved = attribute(name, loaded, images, donor_targets, reduction="none",
                              chunk_size=len(images))
        scale = own.flatten(1).abs().amax(dim=1).clamp_min(1e-30)
        relative = ((moved - own).flatten(1).abs().amax(dim=1) / scale).numpy()
        rho = map_similarity(own.abs().amax(dim=1), moved.abs().amax(dim=1))[1]
        out[name] = {"max_relative_difference": float(relative.max()),
                     "median_relative_difference": float(np.median(relative)),
                     "spearman_abs_mean": round(float(np.nanmean(rho)), 4)}
    agree = switch_agreement(loaded.model, images, donor)
    out["switches_shared_with_next_image"] = {k: round(float(v.mean()), 4)
                                              for k, v in agree.items()}
    return out


def main(argv: list[str] | None = None) -> dict:
    """Run the checks, draw, write the JSON; returns the record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="first test images (>= 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the randomization noise")
    parser.add_argument("--out", default=None, help="default results/compare "
                        "(results/quick/compare with --quick)")
    parser.add_argument("--quick", action="store_true", help="8 images; outputs go to "
                        "results/quick/compare")
    args = parser.parse_args(argv)
    if args.quick:
        args.images = 8
    if args.images < 2:
        parser.error("--images must be >= 2")
    out = Path(args.out or (ROOT / "results" / ("quick/compare" if args.quick else "compare")))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    loaded = deconv.load_model(MODEL)
    test = load_fashion_mnist("test", limit=args.images)
    raw, targets = test.tensors
    images = fashion_batch_transform(loaded.input_size, loaded.mean[0], loaded.std[0])(raw)
    with torch.no_grad():
        predicted = loaded.model(images).argmax(1)
    check = cascading_randomization(loaded, images, targets, list(METHODS), seed=args.seed,
                                    keep_maps=True)
    curves = {}
    for name in METHODS:
        curves[name] = {key: [bootstrap_mean_ci(row) for row in table[name]] for key, table in
                        (("spearman_abs", check.spearman_abs), ("spearman", check.spearman),
                         ("ssim", check.ssim))}
        rho, sim = input_dependence(loaded, images, targets, name,
                                    reference=check.maps[name][0])
        curves[name]["other_image_spearman_abs"] = bootstrap_mean_ci(rho)
        curves[name]["other_image_ssim"] = bootstrap_mean_ci(sim)
    switches = switch_dependence(loaded, images, targets)
    record = {"model": MODEL, "model_source": loaded.source, "images": args.images,
              "accuracy_on_these_images": round(float((predicted == targets).float().mean()), 4),
              "target": "true class", "steps": check.steps, "seed": args.seed,
              "curves": curves, "switch_dependence": switches,
              "summary": _summary(curves, switches), "quick": args.quick}
    record["seconds"] = round(time.perf_counter() - start, 1)
    suffix = "_quick" if args.quick else ""
    _draw_curves(out / f"sanity_{MODEL}{suffix}.png", check.steps, curves, args.images)
    _draw_maps(out / f"sanity_maps_{MODEL}{suffix}.png", loaded, raw, targets, check)
    (out / f"sanity_{MODEL}{suffix}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record["summary"], indent=1))
    return record


def _summary(curves: dict, switches: dict) -> dict:
    """Per method: similarity after fc8 alone and after every layer; other-image similarity."""
    rows = {}
    for name, c in curves.items():
        rows[METHODS[name]] = {
            "spearman_abs_after_fc8": c["spearman_abs"][1][0],
            "spearman_abs_after_all_layers": c["spearman_abs"][-1][0],
            "ssim_after_all_layers": c["ssim"][-1][0],
            "other_image_spearman_abs": c["other_image_spearman_abs"][0]}
    rows["deconvnet with the next image's switches vs that image's map: max relative "
         "difference"] = switches["deconvnet"]["max_relative_difference"]
    rows["guided backprop, same test: max relative difference"] = \
        switches["guided-backprop"]["max_relative_difference"]
    return rows


def _draw_curves(path: Path, steps: list[str], curves: dict, n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(len(steps))
    for name, label in METHODS.items():
        for ax, key in zip(axes, ("spearman_abs", "ssim")):
            rows = curves[name][key]
            mean = np.array([np.nan if r[0] is None else r[0] for r in rows])
            low = np.array([np.nan if r[1] is None else r[1] for r in rows])
            high = np.array([np.nan if r[2] is None else r[2] for r in rows])
            line, = ax.plot(x, mean, marker="o", ms=3, label=label)
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2)
    for ax, label in zip(axes, ("Spearman rank correlation of |map|", "SSIM of |map| / max")):
        ax.set_xticks(x)
        ax.set_xticklabels([step_label(s) for s in steps], rotation=45, ha="right", fontsize=8)
        ax.set_ylabel(label)
        ax.set_ylim(-0.3, 1.05)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xlabel("cumulatively randomized, top layer first")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Cascading randomization on {MODEL} ({n} test images, true class; mean and "
                 "95% bootstrap interval)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _draw_maps(path: Path, loaded, raw: torch.Tensor, targets: torch.Tensor, check) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deconv.plots import scale_for_display

    shown = [0, 1]
    steps = check.steps
    rows = [(i, name) for i in shown for name in METHODS]
    fig, axes = plt.subplots(len(rows), len(steps) + 1,
                             figsize=(1.1 * (len(steps) + 1), 1.15 * len(rows)), squeeze=False)
    classes = loaded.categories
    for r, (i, name) in enumerate(rows):
        axes[r][0].imshow(raw[i, 0].numpy(), cmap="gray", vmin=0, vmax=255)
        axes[r][0].set_ylabel(f"{METHODS[name]}\n{classes[int(targets[i])]}", fontsize=6)
        for s in range(len(steps)):
            m = scale_for_display(check.maps[name][s][i])
            axes[r][s + 1].imshow(m.numpy(), cmap="bwr", vmin=-1, vmax=1)
            if r == 0:
                axes[r][s + 1].set_title(step_label(steps[s]).replace(" (", "\n("),
                                         fontsize=6)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].set_title("image", fontsize=6)
    fig.suptitle("maps as the layers are randomized, top first (each map / its 99.5th "
                 "percentile of |value|; red +, blue -; white = an all-zero map)", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
