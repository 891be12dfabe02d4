"""Benchmark: approximate occlusion on trained weights: speed vs captum and SSIM vs the exact map.

``bench_occlusion.py`` times the methods on random-init VGG16 (speed does not depend on the
weights), but a random network's occlusion map is noise, so the quality of an approximation
can only be judged on trained weights. Here, offline:

* **hed-vgg16** (the VGG16 conv stack with real weights): the map is the total activation of
  the strongest layer-5 feature map (``29``, conv5_3 after ReLU), Fig. 7 (b)-style. Side by
  side in one run: captum ``Occlusion`` on the model cut after that layer plus a spatial sum
  (timed on the non-overlapping windows and extrapolated, as in ``bench_occlusion.py``), the
  exact incremental engine, the projective-field threshold (``max_fraction``), adaptive
  drill-down (``coarse``, ``refine``), both combined, the spatial layers in bfloat16
  (``compute_dtype``; fast where the CPU has AVX512-BF16 or AMX) and bfloat16 with drill-down.
* **efficientnet-lite0** (a real ImageNet classifier, residual and depthwise: the graph engine
  :class:`~deconv.occlusion.graph_engine.GraphOcclusion` runs it): the map is the top class's
  probability; captum ``Occlusion`` on the softmax-wrapped model; the same settings.

Quality is the SSIM against the exact map, on the grid of positions (25 x 25 for 224 px,
32 px square, stride 8) and on the per-pixel map (each pixel: the mean over the windows that
cover it, the map captum's ``Occlusion`` returns and a figure shows). Writes
``bench_occlusion_quality.json`` and ``bench_occlusion_quality.png``.

Usage: ``python experiments/bench_occlusion_quality.py [--quick] [--out results]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from deconv import drill_down_map, load_model
from deconv.occlusion.engines import make_incremental_engine
from deconv.occlusion.grid import occluder_boxes, window_average
from deconv.samples import sample_images

ROOT = Path(__file__).resolve().parent.parent
# name -> (max_fraction, coarse, refine, compute_dtype); "exact" is the reference.
SETTINGS = {"exact": (None, 1, 0.0, None), "threshold": (0.6, 1, 0.0, None),
            "drilldown": (None, 2, 0.1, None), "threshold+drilldown": (0.6, 2, 0.1, None),
            "bf16": (None, 1, 0.0, torch.bfloat16),
            "bf16+drilldown": (None, 2, 0.3, torch.bfloat16)}


def _ssim(exact: np.ndarray, approx: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    span = float(exact.max() - exact.min()) or 1.0
    return float(structural_similarity(exact, approx, data_range=span))


class _Softmax(torch.nn.Module):
    """``[B, K] -> [B, K]`` probabilities."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, 1)


class _SpatialSum(torch.nn.Module):
    """``[B, C, H, W] -> [B, C]``: each feature map's total activation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum((2, 3))


def _captum_seconds(model: torch.nn.Module, image: torch.Tensor, target: int, patch: int,
                    positions: int, features: bool) -> float:
    """captum Occlusion on the non-overlapping windows, extrapolated to ``positions``.

    ``target`` is a feature map (``features``: the model ends with its map) or a class.
    """
    from captum.attr import Occlusion

    wrapped = torch.nn.Sequential(model, _SpatialSum() if features else _Softmax()).eval()
    subset = len(occluder_boxes(image.shape[1], image.shape[2], (patch, patch),
                                (patch, patch))[0])
    start = time.perf_counter()
    with torch.no_grad():
        Occlusion(wrapped).attribute(image[None], sliding_window_shapes=(3, patch, patch),
                                     strides=(3, patch, patch), baselines=0.0, target=target,
                                     perturbations_per_eval=1)
    return (time.perf_counter() - start) / subset * positions


def _run(engine, boxes, shape, score, coarse: int, refine: float
         ) -> tuple[np.ndarray, float, float]:
    start = time.perf_counter()
    result = drill_down_map(engine, boxes, shape, score, coarse=coarse, refine=refine)
    return (result.grid.numpy(), time.perf_counter() - start, result.evaluated_fraction)


def _model_report(name: str, images: list[str], args) -> dict:
    loaded = load_model(name)
    model = loaded.model.eval()
    features = name == "hed-vgg16"
    if features:
        model = model[:30].eval()  # up to conv5_3's ReLU: the layer whose map is totalled
    size = args.size
    boxes, rows, cols = occluder_boxes(size, size, (args.patch, args.patch),
                                       (args.stride, args.stride))
    boxes = torch.as_tensor(boxes)
    settings = SETTINGS
    report: dict = {"map": "strongest layer-5 feature map total (29)" if features else
                    "top-class probability", "images": {}}
    for image_name in images:
        image = loaded.preprocess(sample_images([image_name])[0].image, size=size)
        per: dict = {}
        exact = None
        for key, (max_fraction, coarse, refine, dtype) in settings.items():
            built = time.perf_counter()  # the engine's one clean forward counts too
            engine = make_incremental_engine(model, image, 0.0, layer="29" if features
                                             else None, batch_size=32,
                                             max_fraction=max_fraction, compute_dtype=dtype)
            built = time.perf_counter() - built
            if features:
                channel = int(engine.reference.captured[0].argmax())

                def score(outputs, _c=channel):
                    return outputs.captured[:, _c]
            else:
                target = int(engine.reference.output[0].argmax())

                def score(outputs, _t=target):
                    return torch.softmax(outputs.output, 1)[:, _t]
            with engine:
                grid, seconds, fraction = _run(engine, boxes, (rows, cols), score, coarse,
                                               refine)
                engine_name = type(engine).__name__
            seconds += built
            entry = {"seconds": seconds, "evaluated_fraction": fraction,
                     "max_fraction": max_fraction, "coarse": coarse, "refine": refine,
                     "compute_dtype": str(dtype).replace("torch.", "") if dtype else None}
            pixels = window_average(torch.from_numpy(grid).reshape(-1), boxes, size,
                                    size).numpy()
            if exact is None:
                exact, exact_pixels = grid, pixels
                entry["engine"] = engine_name
                entry["captum_seconds"] = _captum_seconds(
                    model, image, channel if features else target, args.patch, len(boxes),
                    features)
                entry["speedup_vs_captum"] = entry["captum_seconds"] / seconds
                entry["grid"] = grid.tolist()
            else:
                entry.update(
                    speedup_vs_exact=per["exact"]["seconds"] / seconds,
                    ssim_grid=_ssim(exact, grid), ssim_pixels=_ssim(exact_pixels, pixels),
                    max_abs_diff_rel=float(np.abs(grid - exact).max()
                                           / (np.ptp(exact) or 1.0)))
                entry["speedup_vs_captum"] = per["exact"]["captum_seconds"] / seconds
                entry["grid"] = grid.tolist()
            per[key] = entry
            print(f"  {name} {image_name} {key}: {seconds:.1f} s" + (
                f", SSIM grid {entry['ssim_grid']:.3f} / pixels {entry['ssim_pixels']:.3f}"
                if key != "exact" else ""), flush=True)
        report["images"][image_name] = per
    metrics = ("ssim_grid", "ssim_pixels", "speedup_vs_exact", "speedup_vs_captum")
    report["summary"] = {
        key: {metric: {stat: float(fn([report["images"][i][key][metric] for i in images]))
                       for stat, fn in (("min", np.min), ("mean", np.mean))}
              for metric in metrics}
        for key in settings if key != "exact"}
    exact_speedups = [report["images"][i]["exact"]["speedup_vs_captum"] for i in images]
    report["summary"]["exact"] = {"speedup_vs_captum": {"mean": float(np.mean(exact_speedups)),
                                                        "min": float(np.min(exact_speedups))}}
    return report


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(m, i) for m, r in results["models"].items() for i in r["images"]]
    keys = list(SETTINGS)
    fig, axes = plt.subplots(len(rows), len(keys), figsize=(2.2 * len(keys), 2.2 * len(rows)),
                             squeeze=False)
    for r, (model, image) in enumerate(rows):
        per = results["models"][model]["images"][image]
        exact = np.asarray(per["exact"]["grid"])
        low, high = float(exact.min()), float(exact.max())
        shown = None
        for c, key in enumerate(keys):
            ax = axes[r, c]
            ax.axis("off")
            if key not in per:
                continue
            shown = ax.imshow(np.asarray(per[key]["grid"]), cmap="viridis", vmin=low, vmax=high)
            title = f"{model}\n{image} exact" if key == "exact" else (
                f"{key}\nSSIM {per[key]['ssim_grid']:.2f}, {per[key]['speedup_vs_exact']:.1f}x")
            ax.set_title(title, fontsize=7)
        if shown is not None:
            fig.colorbar(shown, ax=axes[r, -1], fraction=0.046, pad=0.04).ax.tick_params(
                labelsize=6)
    fig.suptitle("Occlusion maps per occluder position, exact vs approximate (one scale per row: "
                 "the exact map's range)\nhed-vgg16: total of its strongest conv5_3 feature map; "
                 "efficientnet-lite0: probability of its top class", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.975))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the results dict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: one image, hed-vgg16 only, stride 16")
    parser.add_argument("--out", default=str(ROOT / "results"))
    parser.add_argument("--images", nargs="+",
                        default=["coffee", "chelsea", "astronaut", "rocket"])
    parser.add_argument("--models", nargs="+", default=["hed-vgg16", "efficientnet-lite0"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.models, args.stride = args.images[:1], ["hed-vgg16"], 16
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = {"settings": vars(args), "approximations": {k: dict(zip(
        ("max_fraction", "coarse", "refine", "compute_dtype"), v[:3] + (str(v[3]),)))
        for k, v in SETTINGS.items()}, "models": {}}
    for name in args.models:
        print(f"{name}:", flush=True)
        results["models"][name] = _model_report(name, args.images, args)
    results["total_seconds"] = time.perf_counter() - start
    stem = "bench_occlusion_quality_quick" if args.quick else "bench_occlusion_quality"
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    _plot(results, out / f"{stem}.png")
    for name, r in results["models"].items():
        for key, s in r["summary"].items():
            if key == "exact":
                print(f"{name} exact: {s['speedup_vs_captum']['mean']:.1f}x vs captum")
                continue
            vs_captum = (f", {s['speedup_vs_captum']['mean']:.1f}x vs captum (min "
                         f"{s['speedup_vs_captum']['min']:.1f}x)" if "speedup_vs_captum" in s
                         else "")
            print(f"{name} {key}: {s['speedup_vs_exact']['mean']:.2f}x vs exact{vs_captum}; "
                  f"SSIM grid mean {s['ssim_grid']['mean']:.3f} min {s['ssim_grid']['min']:.3f},"
                  f" pixels mean {s['ssim_pixels']['mean']:.3f} min "
                  f"{s['ssim_pixels']['min']:.3f}")
    return results


if __name__ == "__main__":
    main()
