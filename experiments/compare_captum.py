"""Our deconvnet and occlusion against captum's methods: maps, metrics, sanity checks, cost.

On an offline ImageNet classifier (efficientnet-lite0 by default) and the five sample photos,
every method of :func:`deconv.methods.list_methods` explains the class of the annotated object
(the most probable of the object's ImageNet ids, see ``deconv/data/object_boxes.json``).

Writes under ``--out`` (default ``results/compare``), per model:

* ``grid_<model>.png``: rows images, columns methods; every map scaled by its 99.5th
  percentile of ``|value|`` and clipped to [-1, 1] (:func:`deconv.plots.scale_for_display`),
  one diverging colormap centred on 0;
* ``metrics_<model>.json`` / ``.md``: per method the wall-clock and CPU seconds per image (this
  run), deletion and insertion AUC (Petsiuk et al. 2018; 16 steps, deletion to the mean colour
  = 0 of the normalized input, insertion from an 11 px sigma 5 blur) and their difference,
  pointing-game hits (15 px), the model-randomization check after every layer is randomized
  (Spearman of ``|map|``, SSIM; Adebayo et al. 2018), the other-photo check (the same class
  explained on another photo), two reference maps (uniform noise, a centred Gaussian) and a
  verdict per method;
* ``sanity_<model>.png``: the cascading-randomization curves.

Settings (about 3 minutes on one CPU thread of the project's 2-core machine): integrated
gradients with 32 Gauss-Legendre steps; occlusion with a 32 px square of the mean colour at
stride 16 (169 positions); batches of 4 images (fastest per image on this CPU); the sanity
checks on the five photos with cheaper settings (integrated gradients 8 steps, occlusion 56 px
at stride 56) and 7 randomization steps (classifier, head, stage 6, stage 5, stages 4-3,
stages 2-0, stem). ``--quick``: two photos at 96 px, two randomization steps, ~10 seconds.
The run uses ``--threads 1`` by default (see ``--help``).

Then the Adebayo et al. checks on the trained Fashion-MNIST ZFNet, which has max-pools, so they
do test the deconvnet there (``experiments/sanity_fashion.py``; ``--no-fashion`` skips it).

Usage: ``python experiments/compare_captum.py [--quick] [--out DIR] [--threads 1] [--no-fashion]``
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

import deconv
from deconv.methods import attribute, list_methods, method_info
from deconv.metrics import (
    box_to_input,
    cascading_randomization,
    deletion,
    input_dependence,
    insertion,
    load_object_boxes,
    pointing_game,
)
from deconv.plots import SHORT_NAMES, method_grid, save_figure
from deconv.samples import sample_images

#: Above this mean Spearman rank correlation of |maps| after every layer is randomized, a
#: method "fails" the sanity check: its maps barely depend on the weights.
SANITY_THRESHOLD = 0.5


def settings(quick: bool) -> dict:
    """Every knob of the run, recorded in the JSON."""
    if quick:  # a smoke run: small inputs, every code path once
        return {"images": 2, "size": 96, "ig_steps": 4, "patch": 32, "stride": 32,
                "curve_steps": 8, "sanity_images": 2, "sanity_patch": 48, "sanity_stride": 48,
                "sanity_ig_steps": 2, "sanity_groups": "top-then-rest"}
    return {"images": 5, "size": 224, "ig_steps": 32, "patch": 32, "stride": 16,
            "curve_steps": 16, "sanity_images": 5, "sanity_patch": 56, "sanity_stride": 56,
            "sanity_ig_steps": 8, "sanity_groups": "stages"}


#: Images per forward pass: on one CPU thread a batch of 4 costs ~16 ms per 224 px image with
#: efficientnet-lite0, a batch of 64 ~57 ms (measured on the 2-core machine of this project).
BATCH = 4


def method_options(name: str, ig_steps: int, patch: int, stride: int) -> dict:
    """Per-method options of this run."""
    if "integrated" in name:
        return {"n_steps": ig_steps}  # captum needs internal_batch_size >= images: default
    if "occlusion" in name:
        return {"patch": patch, "stride": stride, "batch_size": BATCH}
    return {}


def sanity_groups(loaded, kind: str) -> list | None:
    """Randomization steps, top first, for EfficientNet-Lite; None (every layer) for others.

    ``"stages"``: classifier, head, stage 6, stage 5, stages 4-3, stages 2-0, stem (7 steps);
    ``"top-then-rest"``: the classifier, then everything else (2 steps, for ``--quick``).
    """
    names = {n for n, _ in loaded.model.named_modules()}
    if not {"classifier", "head", "stem", "stages.6"} <= names:
        return None  # every layer with parameters (deconv.metrics default)
    if kind == "top-then-rest":
        return ["classifier", ["head"] + [f"stages.{s}" for s in range(6, -1, -1)] + ["stem"]]
    return ["classifier", "head", "stages.6", "stages.5", ["stages.4", "stages.3"],
            ["stages.2", "stages.1", "stages.0"], "stem"]


def choose_targets(loaded, images: torch.Tensor, samples, boxes: dict, size: int):
    """Per image: the most probable annotated class id and the boxes (input pixels) of it."""
    with torch.no_grad():
        probs = torch.softmax(loaded.model(images), dim=1)
    targets, target_boxes, rows = [], [], []
    for i, sample in enumerate(samples):
        objects = boxes[sample.name]["objects"]
        ids = sorted({c for o in objects for c in o["class_ids"]})
        best = max(ids, key=lambda c: float(probs[i, c]))
        mapped = [box_to_input(o["box"], sample.image.size, size)
                  for o in objects if best in o["class_ids"]]
        targets.append(best)
        target_boxes.append([b for b in mapped if b is not None])
        rows.append({"image": sample.name, "target": best,
                     "target_name": loaded.categories[best],
                     "probability": round(float(probs[i, best]), 4),
                     "top1": loaded.categories[int(probs[i].argmax())],
                     "boxes": [[round(v, 1) for v in b] for b in target_boxes[-1]]})
    return torch.tensor(targets), target_boxes, rows


def reference_maps(n: int, size: int) -> dict[str, torch.Tensor]:
    """Two maps that know nothing of the model: seeded uniform noise and a centred Gaussian."""
    noise = torch.rand(n, size, size, generator=torch.Generator().manual_seed(0))
    axis = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    centre = torch.exp(-(axis.view(-1, 1) ** 2 + axis.view(1, -1) ** 2) / (2 * (size / 4) ** 2))
    return {"reference: uniform noise": noise,
            "reference: centre Gaussian": centre.expand(n, -1, -1)}


def causal_metrics(model, images, maps, targets, n_steps: int) -> dict:
    """Deletion and insertion AUC per image."""
    out = {"deletion_auc": [], "insertion_auc": []}
    for image, saliency, target in zip(images, maps, targets.tolist()):
        out["deletion_auc"].append(deletion(model, image, saliency, target, n_steps=n_steps,
                                            batch_size=BATCH).auc)
        out["insertion_auc"].append(insertion(model, image, saliency, target, n_steps=n_steps,
                                              batch_size=BATCH).auc)
    return out


def grid_figure(path: Path, loaded, images, rows, maps: dict) -> None:
    """Rows images, columns: the photo then each method's map on the common display scale."""
    labels = [f"{r['image']}\n{r['target_name'][:16]}" for r in rows]
    fig = method_grid(loaded.deprocess(images), maps, labels,
                      title=f"{loaded.name}: each map / its 99.5th percentile of |value|, "
                            "clipped to [-1, 1] (red +, blue -)")
    save_figure(fig, path)


def sanity_figure(path: Path, model_name: str, steps: list[str], summary: dict) -> None:
    """Mean Spearman(|map|) and SSIM vs the trained model's maps, per randomization step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    colours = plt.get_cmap("tab20")
    for index, (name, curves) in enumerate(summary.items()):
        style = "-" if method_info(name).family == "ours" else "--"
        for ax, key in zip(axes, ("spearman_abs", "ssim")):
            values = [np.nan if v is None else v for v in curves[key]]
            ax.plot(range(len(steps)), values, style, marker="o", ms=3,
                    color=colours(index % 20),
                    label=SHORT_NAMES.get(name, name).replace("\n", " "))
    for ax, label in zip(axes, ("Spearman rank correlation of |map|", "SSIM of |map| / max")):
        ax.set_xticks(range(len(steps)))
        ax.set_xticklabels(steps, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel(label)
        ax.set_ylim(-0.5, 1.05)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xlabel("cumulatively randomized, top layer first")
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(f"Cascading randomization (Adebayo et al. 2018) on {model_name}: a method "
                 "that explains the model must fall to ~0", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, palette=False)


def verdicts(table: dict, references: dict) -> dict[str, str]:
    """One plain sentence per method from its numbers (rules stated in the markdown)."""
    best_reference = max(r["insertion_minus_deletion"] for r in references.values())
    out = {}
    for name, row in table.items():
        top, every = _below(row.get("top_spearman_abs")), _below(row.get("sanity_spearman_abs"))
        model_ok = None if top is None or every is None else top and every
        input_ok = _below(row.get("input_spearman_abs"))
        causal_ok = row["insertion_minus_deletion"] > best_reference
        faithful = model_ok is True and input_ok is True and causal_ok
        parts = [_says(model_ok, "changes when the weights are randomized",
                       "SURVIVES randomizing the top layer" if top is False
                       else "SURVIVES randomizing every weight"),
                 _says(input_ok, "changes with the photo", "is the SAME map for other photos"),
                 "insertion - deletion " + ("beats" if causal_ok else "does not beat")
                 + " the reference maps"]
        out[name] = ("faithful on this evidence" if faithful else "not shown faithful") + \
            ": " + "; ".join(parts)
    return out


def _below(value: float | None) -> bool | None:
    return None if value is None else value < SANITY_THRESHOLD


def _says(ok: bool | None, good: str, bad: str) -> str:
    return "not measured" if ok is None else good if ok else bad


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(record: dict) -> str:
    """The results table and what it means, for the README."""
    model = record["model"]
    lines = [f"# Attribution methods on {model} ({len(record['images'])} photos)", "",
             f"Model: {record['model_source']}. Targets (the annotated object's most probable "
             "ImageNet class): " + ", ".join(
                 f"{r['image']} -> {r['target_name']} (p={r['probability']:.2f})"
                 for r in record["images"]) + ".", "",
             "| method | wall s / image | CPU s / image | deletion AUC (lower better) | "
             "insertion AUC (higher better) | ins - del | pointing game | top layer randomized: "
             "Spearman abs / SSIM | all layers randomized: Spearman abs / SSIM | other photo: "
             "Spearman abs / SSIM | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in {**record["methods"], **record["references"]}.items():
        lines.append(
            f"| {name} | {_fmt(row.get('seconds_per_image'), 2)} | "
            f"{_fmt(row.get('cpu_seconds_per_image'), 2)} | {_fmt(row['deletion_auc'])} | "
            f"{_fmt(row['insertion_auc'])} | {_fmt(row['insertion_minus_deletion'])} | "
            f"{row['pointing_hits']}/{row['pointing_total']} | "
            f"{_fmt(row.get('top_spearman_abs'), 2)} / {_fmt(row.get('top_ssim'), 2)} | "
            f"{_fmt(row.get('sanity_spearman_abs'), 2)} / {_fmt(row.get('sanity_ssim'), 2)} | "
            f"{_fmt(row.get('input_spearman_abs'), 2)} / {_fmt(row.get('input_ssim'), 2)} | "
            f"{record['verdicts'].get(name, 'reference map (ignores the model)')} |")
    left_out = {n: r["spearman_abs_nan"] for n, r in record["methods"].items()
                if any((r.get("spearman_abs_nan") or {}).values())}
    lines += ["", "Spearman values left out of the means (NaN: a constant map, no ranking): " + (
        "; ".join(f"{n}: {c['top']} after the top layer, {c['all']} after all layers"
                  for n, c in left_out.items()) or "none") + "."]
    checks = record["checks"]
    lines += [
        "", "## What this shows", "",
        f"- **Faithful to the model on this evidence: {', '.join(record['faithful']) or 'none'}."
        f"** Not shown faithful: {', '.join(record['not_faithful']) or 'none'}. A method is "
        "called faithful when (1) its maps change when the weights are randomized (cascading "
        "randomization, Adebayo et al. 2018: mean Spearman correlation of |map| with the "
        f"trained model's map below {SANITY_THRESHOLD} both after the top layer (the class "
        "weights) and after every layer is randomized), (2) its map changes when the same "
        "class is explained on another photo (Spearman of |map| below "
        f"{SANITY_THRESHOLD}), and (3) its insertion AUC minus deletion AUC beats both reference "
        "maps (uniform noise, a centred Gaussian), which know nothing of the model.",
        "- Close to the threshold (within 0.1) after the top layer: " + (", ".join(
            f"{n} ({r['top_spearman_abs']:.2f})" for n, r in record["methods"].items()
            if r.get("top_spearman_abs") is not None
            and abs(r["top_spearman_abs"] - SANITY_THRESHOLD) < 0.1) or "none") + "; with so "
        "few photos read these as borderline. The gap to the methods that stay near 1.00 does "
        "not depend on the threshold.",
        "- Guided backprop and the deconvnet (ours, which apply their rule at ReLU6) keep "
        "almost the same map when the classifier and the head are randomized (Spearman "
        f"{_fmt(record['methods'].get('guided-backprop', {}).get('top_spearman_abs'), 2)} and "
        f"{_fmt(record['methods']['deconvnet'].get('top_spearman_abs'), 2)} after the top "
        "layer): they do not depend on the class weights, as Adebayo et al. found for guided "
        "backprop. They only change once the lower layers go (see the sanity-check curves).",
        "- Deletion alone favours scattered maps: deleting random pixels to the mean colour "
        "already destroys the photo, so uniform noise scores a low (good) deletion AUC, while "
        "coarse maps (occlusion, Grad-CAM) delete whole regions first and score worse. "
        "Insertion alone favours smooth, object-centred maps (the centred Gaussian does well). "
        "Their difference is less biased either way; all three are in the table.",
        f"- Our deconvnet projects the class logit through {model} with the deconvnet rule, "
        "which ignores the forward pass at every rectifier; with no max-pooling (no switches) "
        "and batch-norm passed through, nothing in its backward pass depends on the photo: "
        "its map is the same for every photo of a class (other-photo Spearman "
        f"{_fmt(record['methods']['deconvnet'].get('input_spearman_abs'), 2)}). On max-pooling "
        "networks (ZFNet, VGG) the switches carry the image; here the deconvnet explains the "
        "weights only.",
        "- captum's Deconvolution and GuidedBackprop override only `nn.ReLU` modules; "
        f"{model} uses `nn.ReLU6`, so on it both are the plain gradient (max |difference| from "
        f"Saliency's gradient: Deconvolution {checks['captum_deconvolution_vs_gradient']:.2g}, "
        f"GuidedBackprop {checks['captum_guided_backprop_vs_gradient']:.2g}) and GuidedGradCam "
        "is gradient x Grad-CAM. Their columns measure the gradient, not those methods.",
        "- Our occlusion and captum's Occlusion compute the same quantity (max |difference| of "
        f"the maps: {checks['occlusion_ours_vs_captum']:.2g}); their cost columns compare the "
        "implementations.",
        f"- The pointing game is weak evidence here: {len(record['images'])} images, and the "
        "chelsea cat fills the whole crop (every map hits it).",
        f"- The sanity checks use the first {len(record['sanity']['images'])} photos and coarser "
        "settings (see below); times are seconds per image measured in this run on a shared "
        "CPU: compare methods within the table, not across runs or machines.",
        "", "## Settings", "", "```", json.dumps(record["settings"], indent=1), "```", ""]
    return "\n".join(lines)


def time_methods(loaded, images, targets, names: list[str], cfg: dict):
    """Every method's maps, with wall-clock and CPU seconds per image."""
    attribute("captum-saliency", loaded, images[:1], targets[:1])  # warm-up, not timed
    maps, wall, cpu = {}, {}, {}
    for name in names:
        opts = method_options(name, cfg["ig_steps"], cfg["patch"], cfg["stride"])
        start, start_cpu = time.perf_counter(), time.process_time()
        maps[name] = attribute(name, loaded, images, targets, **opts).float()
        wall[name] = (time.perf_counter() - start) / len(images)
        cpu[name] = (time.process_time() - start_cpu) / len(images)
        print(f"  {name:30s} {wall[name]:6.2f} s/image (CPU {cpu[name]:.2f})", flush=True)
    return maps, wall, cpu


def score_maps(loaded, images, targets, target_boxes, maps: dict, n_steps: int) -> dict:
    """Deletion, insertion and pointing game of every map set."""
    table = {}
    for name, m in maps.items():
        curves = causal_metrics(loaded.model, images, m, targets, n_steps)
        game = pointing_game(m, target_boxes)
        deletion_auc = float(np.mean(curves["deletion_auc"]))
        insertion_auc = float(np.mean(curves["insertion_auc"]))
        table[name] = {"deletion_auc": deletion_auc, "insertion_auc": insertion_auc,
                       "insertion_minus_deletion": insertion_auc - deletion_auc,
                       "pointing_hits": sum(game.hits), "pointing_total": len(game.hits),
                       "per_image": {"deletion_auc": [round(v, 4) for v in
                                                      curves["deletion_auc"]],
                                     "insertion_auc": [round(v, 4) for v in
                                                       curves["insertion_auc"]],
                                     "pointing_hit": game.hits, "pointing_xy": game.points}}
    return table


def run_model(model_name: str, samples, boxes: dict, cfg: dict, out: Path) -> dict:
    """Everything for one model; returns the JSON record."""
    loaded = deconv.load_model(model_name)
    images = torch.stack([loaded.preprocess(s.image, size=cfg["size"]) for s in samples])
    targets, target_boxes, rows = choose_targets(loaded, images, samples, boxes, cfg["size"])
    names = list_methods()
    phases, clock = {}, time.perf_counter()
    maps, wall, cpu = time_methods(loaded, images, targets, names, cfg)
    grid_figure(out / f"grid_{model_name}.png", loaded, images, rows, maps)
    phases["maps_and_grid"], clock = round(time.perf_counter() - clock, 1), time.perf_counter()

    table = score_maps(loaded, images, targets, target_boxes, maps, cfg["curve_steps"])
    references = score_maps(loaded, images, targets, target_boxes,
                            reference_maps(len(images), cfg["size"]), cfg["curve_steps"])
    for name in names:
        table[name]["seconds_per_image"] = round(wall[name], 3)
        table[name]["cpu_seconds_per_image"] = round(cpu[name], 3)
    phases["deletion_insertion_pointing"] = round(time.perf_counter() - clock, 1)
    print(f"  deletion / insertion / pointing done in {phases['deletion_insertion_pointing']} s",
          flush=True)

    k = cfg["sanity_images"]
    sanity_opts = {name: method_options(name, cfg["sanity_ig_steps"], cfg["sanity_patch"],
                                        cfg["sanity_stride"]) for name in names}
    start = time.perf_counter()
    check = cascading_randomization(loaded, images[:k], targets[:k], names,
                                    groups=sanity_groups(loaded, cfg["sanity_groups"]),
                                    options=sanity_opts, seed=0, keep_maps=True)
    summary = check.summary()
    for name in names:
        table[name]["top_spearman_abs"] = summary[name]["spearman_abs"][1]
        table[name]["top_ssim"] = summary[name]["ssim"][1]
        table[name]["sanity_spearman_abs"] = summary[name]["spearman_abs"][-1]
        # Spearman is NaN for a constant map; the means above leave those images out.
        table[name]["spearman_abs_nan"] = {"top": summary[name]["spearman_abs_nan"][1],
                                           "all": summary[name]["spearman_abs_nan"][-1]}
        table[name]["sanity_ssim"] = summary[name]["ssim"][-1]
        rho, sim = input_dependence(loaded, images[:k], targets[:k], name,
                                    reference=check.maps[name][0], options=sanity_opts[name])
        table[name]["input_spearman_abs"] = _nanmean(rho)
        table[name]["input_ssim"] = _nanmean(sim)
    sanity_seconds = time.perf_counter() - start
    phases["sanity_checks"] = round(sanity_seconds, 1)
    labels = [step if step.count("+") < 2 else f"{step.split('+')[0]}..{step.split('+')[-1]}"
              for step in check.steps]
    sanity_figure(out / f"sanity_{model_name}.png", model_name, labels, summary)
    print(f"  sanity checks done in {sanity_seconds:.1f} s", flush=True)

    def max_diff(a: str, b: str) -> float:
        return float((attribute(a, loaded, images[:1], targets[:1], reduction="none")
                      - attribute(b, loaded, images[:1], targets[:1], reduction="none"))
                     .abs().max())

    checks = {"captum_deconvolution_vs_gradient": max_diff("captum-deconvolution",
                                                           "captum-saliency"),
              "captum_guided_backprop_vs_gradient": max_diff("captum-guided-backprop",
                                                             "captum-saliency"),
              "occlusion_ours_vs_captum": float((maps["occlusion"] - maps["captum-occlusion"])
                                                .abs().max())}
    record = {"model": model_name, "model_source": loaded.source, "settings": cfg,
              "images": rows, "methods": table, "references": references,
              "sanity": {"steps": check.steps, "images": [r["image"] for r in rows[:k]],
                         "seconds": round(sanity_seconds, 1), "curves": summary},
              "checks": checks, "phase_seconds": phases,
              "reductions": {n: method_info(n).reduction for n in names}}
    record["verdicts"] = verdicts(table, references)
    record["faithful"] = [n for n, v in record["verdicts"].items() if v.startswith("faithful")]
    record["not_faithful"] = [n for n in names if n not in record["faithful"]]
    (out / f"metrics_{model_name}.json").write_text(json.dumps(record, indent=1,
                                                               default=_json_default) + "\n")
    (out / f"metrics_{model_name}.md").write_text(markdown(record))
    return record


def _nanmean(values: np.ndarray) -> float | None:
    finite = values[~np.isnan(values)]
    return round(float(finite.mean()), 4) if finite.size else None


def _json_default(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def main(argv: list[str] | None = None) -> dict:
    """Run the comparison; returns ``{model: record}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["efficientnet-lite0"],
                        help="zoo classifiers with offline weights")
    parser.add_argument("--out", default=None,
                        help="output directory (default results/compare; results/quick/compare "
                             "with --quick, so a smoke run never overwrites the real results)")
    parser.add_argument("--quick", action="store_true", help="smoke run (two images, coarse)")
    parser.add_argument("--no-fashion", action="store_true",
                        help="skip the zfnet-fashion sanity checks (experiments/sanity_fashion.py)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads during the run (default 1: on a shared machine "
                             "multi-threaded small convolutions can be 10-100x slower when "
                             "another process holds a core); restored afterwards")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> dict:
    """The body of :func:`main` (with the thread count set)."""
    cfg = settings(args.quick)
    out = Path(args.out or ("results/quick/compare" if args.quick else "results/compare"))
    out.mkdir(parents=True, exist_ok=True)
    samples = sample_images()[: cfg["images"]]
    boxes = load_object_boxes()
    cfg["threads"], cfg["batch"] = args.threads, BATCH
    records = {}
    for model_name in args.models:
        print(f"{model_name}:", flush=True)
        start = time.perf_counter()
        records[model_name] = run_model(model_name, samples, boxes, cfg, out)
        print(f"{model_name}: done in {time.perf_counter() - start:.1f} s; faithful on this "
              f"evidence: {records[model_name]['faithful']}", flush=True)
    if not args.no_fashion:
        import importlib.util

        path = Path(__file__).resolve().parent / "sanity_fashion.py"
        spec = importlib.util.spec_from_file_location("experiments.sanity_fashion", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        records["zfnet-fashion"] = module.main(["--out", str(out)]
                                               + (["--quick"] if args.quick else []))
    return records


if __name__ == "__main__":
    main()
