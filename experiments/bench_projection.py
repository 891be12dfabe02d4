"""Projections per second: the batched explicit deconvnet vs captum's NeuronDeconvolution.

For the strongest units of one VGG16 layer over the sample photos, project every unit with
:class:`deconv.deconvnet.Deconvnet` (all units in one call, ``chunk_size`` at a time, switches
recorded once) and with ``captum.attr.NeuronDeconvolution`` called once per unit (the way captum
is used for many neurons). Captum is timed on an evenly spaced subset of the units and its
per-unit time is extrapolated to all of them (stated in the JSON); on that subset the two
outputs are compared (both seed the unit with 1). The primary layer (default: paper layer 3)
gives the headline ratio; further layers, with fewer units, show how the speed-up depends on
depth: the explicit engine only works inside each unit's receptive field, which at layer 5 of a
224 px VGG16 covers most of the image, so the gain there is mostly batching.

Writes ``<out>/bench_projection.json`` and ``<out>/bench_projection.png``.

Usage: ``python experiments/bench_projection.py [--quick] [--out results]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import torch

import deconv
from deconv.deconvnet import Deconvnet, GenericDeconvnet
from deconv.samples import sample_images


def _load(name: str):
    try:
        return deconv.load_model(name, weights=None if name == "vgg16" else "default")
    except Exception as exc:  # hed-vgg16's weight package missing: random-init VGG16 instead
        print(f"{name} unavailable ({exc}); using random-init vgg16")
        return deconv.load_model("vgg16", weights=None)


def _captum_once(model, module, image, unit):
    from captum.attr import NeuronDeconvolution

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return NeuronDeconvolution(model, module).attribute(
            image.clone().requires_grad_(True), neuron_selector=tuple(unit))[0]


def bench_layer(loaded, images: torch.Tensor, layer: int, n_units: int, n_captum: int,
                chunk_size: int, with_generic: bool) -> dict:
    """Time both methods on the ``n_units`` strongest units of ``layer``; one JSON record."""
    engine = Deconvnet(loaded)
    name = engine.resolve(layer)
    top = engine.top_units(images, layer, n_units)
    units = top.units
    engine.project(images, layer, units[:2], seed="unit")  # warm-up (tracing, allocator)

    start = time.perf_counter()
    ours = engine.project(images, layer, units, seed="unit", chunk_size=chunk_size)
    explicit_s = time.perf_counter() - start

    subset = torch.linspace(0, len(units) - 1, min(n_captum, len(units))).round().long()
    module = loaded.model.get_submodule(name)
    _captum_once(loaded.model, module, images[:1], units[0, 1:].tolist())  # warm-up
    worst = 0.0
    start = time.perf_counter()
    refs = []
    for row in subset.tolist():
        i, c, y, x = units[row].tolist()
        refs.append(_captum_once(loaded.model, module, images[i:i + 1], (c, y, x)))
    captum_s = time.perf_counter() - start
    for row, ref in zip(subset.tolist(), refs):
        scale = ref.abs().max().clamp_min(1e-30)
        worst = max(worst, ((ours[row] - ref).abs().max() / scale).item())
    captum_per_unit = captum_s / len(subset)
    record = {
        "layer": layer, "module": name, "units": len(units), "chunk_size": chunk_size,
        "explicit_seconds": explicit_s, "explicit_units_per_s": len(units) / explicit_s,
        "captum_units_timed": len(subset), "captum_seconds_timed": captum_s,
        "captum_seconds_per_unit": captum_per_unit,
        "captum_units_per_s": 1.0 / captum_per_unit,
        "captum_seconds_extrapolated": captum_per_unit * len(units),
        "speedup": captum_per_unit * len(units) / explicit_s,
        "max_relative_difference": worst,
        "outputs_agree": worst < 1e-4,
    }
    if with_generic:
        generic = GenericDeconvnet(loaded)
        start = time.perf_counter()
        mine = generic.project(images, layer, units[subset], seed="unit", chunk_size=chunk_size)
        record["generic_units_per_s"] = len(subset) / (time.perf_counter() - start)
        record["generic_max_abs_difference"] = (mine - ours[subset]).abs().max().item()
    print(f"layer {layer} ({name}): explicit {record['explicit_units_per_s']:.2f} units/s, "
          f"captum {record['captum_units_per_s']:.3f} units/s (on {len(subset)} units), "
          f"speed-up {record['speedup']:.1f}x, max rel. diff {worst:.1e}")
    return record


def _figure(runs: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    labels = [f"layer {r['layer']}\n({r['module']})" for r in runs]
    xs = range(len(runs))
    ax.bar([x - 0.2 for x in xs], [r["explicit_units_per_s"] for r in runs], 0.4,
           label="deconv.Deconvnet (batched)")
    ax.bar([x + 0.2 for x in xs], [r["captum_units_per_s"] for r in runs], 0.4,
           label="captum NeuronDeconvolution (per unit)")
    for x, r in zip(xs, runs):
        ax.text(x, r["explicit_units_per_s"], f"{r['speedup']:.0f}x", ha="center", va="bottom")
    ax.set_yscale("log")
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_ylabel("projections / second")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and write the JSON and PNG; returns the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hed-vgg16", help="a VGG16 of the zoo")
    parser.add_argument("--layer", type=int, default=3, help="paper layer of the headline ratio")
    parser.add_argument("--units", type=int, default=1024, help="units of the headline layer")
    parser.add_argument("--captum-units", type=int, default=30,
                        help="units captum is timed on (per-unit time is extrapolated)")
    parser.add_argument("--more-layers", default="1,2,4,5",
                        help="comma-separated paper layers timed with --more-units units")
    parser.add_argument("--more-units", type=int, default=64)
    parser.add_argument("--size", type=int, default=224, help="input side in pixels")
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 112 px, 64 units, captum on 3, no extra layers")
    parser.add_argument("--out", default="results", help="output directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.units, args.captum_units, args.more_layers = 112, 64, 3, ""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    loaded = _load(args.model)
    images = torch.stack([loaded.preprocess(s.image, args.size) for s in sample_images()])
    layers = [args.layer] + [int(v) for v in args.more_layers.split(",") if v.strip()]
    runs = []
    for index, layer in enumerate(layers):
        primary = index == 0
        runs.append(bench_layer(loaded, images, layer, args.units if primary else args.more_units,
                                args.captum_units if primary else min(args.captum_units, 20),
                                args.chunk_size, with_generic=primary))
    head = runs[0]
    record = {
        "benchmark": "deconvnet projections per second, batched explicit engine vs captum "
                     "NeuronDeconvolution called once per unit",
        "model": loaded.name, "model_source": loaded.source, "input_size": args.size,
        "images": len(images), "device": "cpu", "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "captum": __import__("captum").__version__,
        "platform": platform.platform(), "quick": args.quick,
        "units_chosen_as": "strongest activations of the layer over the sample photos",
        "seed": "unit (1), as captum's neuron methods",
        "captum_timing": "captum timed on an evenly spaced subset of the units; its per-unit "
                         "time is extrapolated to all units; outputs compared on that subset",
        "caveat": "measured on a shared, loaded 2-core machine; absolute rates are noisy, the "
                  "ratio less so",
        "headline_layer": head["layer"], "headline_units": head["units"],
        "ratio": head["speedup"], "target_ratio": 20.0, "meets_target": head["speedup"] >= 20,
        "runs": runs,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_projection.json").write_text(json.dumps(record, indent=2))
    _figure(runs, out / "bench_projection.png",
            f"{loaded.name}, {args.size} px, CPU x{torch.get_num_threads()}: projections/s")
    print(f"ratio {head['speedup']:.1f}x at layer {head['layer']} ({head['units']} units); "
          f"wrote {out / 'bench_projection.json'}")
    return record


if __name__ == "__main__":
    main()
