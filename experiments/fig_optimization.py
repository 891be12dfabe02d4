"""Feature visualization by optimization beside the dataset's top-9 (Olah et al., Distill 2017).

Offline default: ``hed-vgg16``. Two figures under ``results/optimization/``:

1. ``optima_vs_top9.png``: for 2 feature maps of paper layers 1, 3 and 5 (the channels that
   ``experiments/fig2_top9.py`` shows first, so the rows can be found in Fig. 2 too), the
   positive optimum (the rectified map's mean made large), the negative optimum (the
   pre-activation's mean made as negative as possible), and the top-9 image patches with
   their deconvnet projections, from the mining result Fig. 2 wrote
   (``results/fig2/topk.pt`` + ``topk.json``, which records how the sample crops were made).
   If that file is missing, the crops at scales 1 and 1/2 of the sample photos are mined
   here instead (``--topk none`` leaves the two top-9 columns blank).
2. ``regularization.png``: one feature map optimized without regularization (pixel basis,
   RGB, no transforms: high-frequency noise), then with each regularizer added cumulatively:
   + transformation robustness, + decorrelated colour, + Fourier (1/f) parametrization.

``optimization.json`` records settings, objective values and timings. Image sides grow with
depth (64, 80, 96 px for layers 1, 3, 5) and everything runs 128 Adam steps, to fit the CPU
budget; pass ``--steps``/``--sizes`` for cleaner images.

Usage: ``python experiments/fig_optimization.py [--quick] [--out results/optimization]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import deconv
from deconv.layers import resolve_layer
from deconv.optimization import channel, evaluate, optima_objectives, visualize_feature
from deconv.plots.optima import (
    OptimaRow,
    render_optima_sheet,
    render_regularization_sheet,
)

# (name, parametrization, decorrelate, transforms): each adds one regularizer to the last.
REGULARIZATION_STEPS = [
    ("no regularization", "pixel", False, None),
    ("+ transforms", "pixel", False, "standard"),
    ("+ decorrelated colour", "pixel", True, "standard"),
    ("+ Fourier (1/f)", "fourier", True, "standard"),
]


def load_mining(loaded, path: str, layers: list[str], quick: bool):
    """The mining result and its dataset: Fig. 2's file if there, else mine here.

    Returns:
        tuple: (TopKResult | None, dataset | None, dict of Fig. 2's channels per layer, note).
    """
    from deconv.mining import SampleCrops, TopKResult, mine_top_k

    if path == "none":
        return None, None, {}, "top-9 not shown (--topk none)"
    topk = Path(path)
    record_file = topk.with_name("topk.json")
    if topk.exists() and record_file.exists():
        record = json.loads(record_file.read_text())
        described = record.get("dataset", {})
        result = TopKResult.load(topk)
        if all(name in result.layers for name in layers) and described.get("photos"):
            dataset = SampleCrops(loaded.preprocess, names=described["photos"],
                                  scales=described["scales"], size=described["size"],
                                  overlap=described["overlap"])
            if len(dataset) == result.images_seen and record.get("model") == loaded.name:
                channels = {n: e["channels"] for n, e in record.get("layers", {}).items()}
                return result, dataset, channels, f"top-9 from {topk} ({len(dataset)} crops)"
    # Fig. 2 has not run (or mined something else): mine a smaller set of the same crops.
    names, scales = (["coffee"], [1.0]) if quick else ("all", [1.0, 0.5])
    dataset = SampleCrops(loaded.preprocess, names=names, scales=scales, size=64 if quick else 128)
    result = mine_top_k(loaded, dataset, layers, k=9, batch_size=16, progress=False)
    return result, dataset, {}, f"top-9 mined here over {len(dataset)} crops ({topk} missing)"


def pick(result, channels_of: dict, name: str, count: int, seed: int) -> list[int]:
    """Fig. 2's channels for this layer when known, else a seeded pick among alive ones."""
    from deconv.plots.topk_grids import pick_channels

    if channels_of.get(name):
        return list(channels_of[name])[:count]
    if result is not None:
        return pick_channels(result, name, count, seed=seed,
                             min_entries=min(result.k, max(result.images_seen, 1)))
    return list(range(count))


def main(argv: list[str] | None = None) -> dict:
    """Optimize, draw and record; returns the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hed-vgg16", help="zoo model")
    parser.add_argument("--layers", nargs="+", default=["1", "3", "5"],
                        help="paper layer numbers or module names")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 80, 96],
                        help="image side per layer (one value, or one per layer)")
    parser.add_argument("--channels", type=int, default=2, help="feature maps per layer")
    parser.add_argument("--steps", type=int, default=128, help="Adam steps")
    parser.add_argument("--lr", type=float, default=0.05, help="Adam learning rate")
    parser.add_argument("--topk", default="results/fig2/topk.pt",
                        help="mining result of fig2_top9.py ('none': leave the top-9 blank)")
    parser.add_argument("--ablation-layer", default="3",
                        help="layer of the regularization sheet (its first shown channel)")
    parser.add_argument("--ablation-size", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: leave torch's default)")
    parser.add_argument("--out", default="results/optimization", help="output directory")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: layers 1 and 3, one map each, 48 px, 12 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.layers, args.sizes, args.channels, args.steps = ["1", "3"], [48], 1, 12
        args.ablation_size = 48
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = args.sizes * len(args.layers) if len(args.sizes) == 1 else args.sizes
    if len(sizes) != len(args.layers):
        raise ValueError(f"give one size or one per layer ({len(args.layers)}), got {args.sizes}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    loaded = deconv.load_model(args.model)
    paper = {v: k for k, v in loaded.layers.items()}
    names = [resolve_layer(loaded, int(x) if x.isdigit() else x) for x in args.layers]
    result, dataset, fig2_channels, note = load_mining(loaded, args.topk, names, args.quick)
    record: dict = {"model": loaded.name, "source": loaded.source, "top9": note,
                    "steps": args.steps, "lr": args.lr, "seed": args.seed,
                    "threads": torch.get_num_threads(), "layers": {}}
    print(f"fig_optimization: {note}", flush=True)

    rows, optimize_s, panel_s = [], 0.0, 0.0
    for name, size in zip(names, sizes):
        chosen = pick(result, fig2_channels, name, args.channels, args.seed)
        objectives = [o for c in chosen for o in optima_objectives(loaded, name, c)]
        run = visualize_feature(loaded, objectives, size=size, steps=args.steps, lr=args.lr,
                                seed=args.seed)
        optimize_s += run.seconds
        inputs = loaded.normalize(run.images)
        t0 = time.perf_counter()
        panels = {}
        if result is not None:
            from deconv.plots.topk_grids import top_k_panels

            def image_of(i: int) -> torch.Tensor:
                return dataset[i]

            panels = {p.channel: p for p in top_k_panels(loaded, result, image_of, name, chosen,
                                                         loaded.deprocess, tile=46)}
        panel_s += time.perf_counter() - t0
        label = f"layer {paper[name]}" if name in paper else name
        entry = {"paper_layer": paper.get(name), "size": size,
                 "seconds": round(run.seconds, 1), "channels": {}}
        for j, c in enumerate(chosen):
            fmap = evaluate(loaded, channel(name, c), inputs[2 * j:2 * j + 2]).tolist()
            pre = evaluate(loaded, channel(name, c, pre_activation=True),
                           inputs[2 * j:2 * j + 2]).tolist()
            top = panels[c].values[0] if c in panels else None
            entry["channels"][str(c)] = {
                "positive_map_mean": round(fmap[0], 3), "negative_map_mean": round(fmap[1], 3),
                "positive_pre_activation_mean": round(pre[0], 3),
                "negative_pre_activation_mean": round(pre[1], 3),
                "top1_activation": None if top is None else round(top, 3)}
            caption = [f"{label} ({name})", f"channel {c}", f"+ mean {fmap[0]:.3g}",
                       f"- pre-act {pre[1]:.3g}"]
            if top is not None:
                caption.append(f"top-1 {top:.3g}")
            rows.append(OptimaRow(caption, run.images[2 * j], run.images[2 * j + 1],
                                  panels[c].projections if c in panels else None,
                                  panels[c].patches if c in panels else None))
        record["layers"][name] = entry
        print(f"  {label} ({name}): channels {chosen} at {size} px in {run.seconds:.1f} s",
              flush=True)
    sheet = render_optima_sheet(
        rows, out / "optima_vs_top9.png",
        title=f"{loaded.name}: optima ({args.steps} steps) | {note}")

    ablation = resolve_layer(loaded, int(args.ablation_layer) if args.ablation_layer.isdigit()
                             else args.ablation_layer)
    c = pick(result, fig2_channels, ablation, 1, args.seed)[0]
    positive, _ = optima_objectives(loaded, ablation, c)
    images, captions, steps_record = [], [], []
    for title, parametrization, decorrelate, transforms in REGULARIZATION_STEPS:
        run = visualize_feature(loaded, positive, size=args.ablation_size, steps=args.steps,
                                lr=args.lr, parametrization=parametrization,
                                decorrelate=decorrelate, transforms=transforms, seed=args.seed)
        optimize_s += run.seconds
        value = float(run.values[0])
        images.append(run.images[0])
        captions.append([title, f"map mean {value:.3g}"])
        steps_record.append({"setting": title, "map_mean": round(value, 3),
                             "seconds": round(run.seconds, 1)})
    label = f"layer {paper[ablation]}" if ablation in paper else ablation
    reg = render_regularization_sheet(
        images, captions, out / "regularization.png",
        title=f"{loaded.name} {label} ({ablation}) channel {c}: regularizers added left to right")
    record["regularization"] = {"layer": ablation, "channel": c, "size": args.ablation_size,
                                "steps": steps_record}
    record["figures"] = [str(sheet), str(reg)]
    record["optimize_seconds"] = round(optimize_s, 1)
    record["top9_panel_seconds"] = round(panel_s, 1)
    record["total_seconds"] = round(time.perf_counter() - start, 1)
    (out / "optimization.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"fig_optimization: optimization {optimize_s:.1f} s, top-9 panels {panel_s:.1f} s, "
          f"total {record['total_seconds']} s -> {sheet}, {reg}")
    return record


if __name__ == "__main__":
    main()
