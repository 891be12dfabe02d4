"""Projections per second: our deconvnet engines vs captum's NeuronDeconvolution, per layer.

Workloads (each one record of ``runs`` with ``"model"``, ``"layer"`` and ``"speedup"``):

* ``hed-vgg16`` (VGG16 convolutions), 224 px: the strongest 1,024 units of paper layer 3 (the
  headline) and 64 of layers 1, 2, 4, 5, projected by the explicit engine
  (:class:`deconv.deconvnet.Deconvnet`) and by the generic one
  (:class:`deconv.deconvnet.GenericDeconvnet`, which on this chain takes the explicit engine's
  way down by default, and with ``windowed=False`` its own autograd path: one forward per image
  and receptive-field crops); ``speedup`` is the explicit engine's.
* ``resnet50`` (torchvision, random weights: speed does not depend on them), 224 px: the
  strongest 1,024 units of ``layer3`` and 512 of ``layer4``, generic engine only (the explicit
  one needs a chain); ``speedup`` is the generic engine's. Batch norm is back-propagated
  (``skip_normalization=False``) so that the outputs equal captum's.

Our engines get all the units of one call (``chunk_size`` at a time); captum's
``NeuronDeconvolution`` is called once per unit, the way it is used for many neurons, on an
evenly spaced subset of the units whose per-unit time is extrapolated to all of them (stated in
the JSON); on that subset the outputs are compared (both seed the unit with 1). Where a unit's
receptive field covers the image the limit of the ratio is about 2 (captum pays a forward and a
backward per unit, we pay a backward and share one forward per image). The generic engine with a
bfloat16 backward (``compute_dtype=torch.bfloat16``, approximate) is timed on a subset, with its
relative error against the exact float32 projections.

Writes ``<out>/bench_projection.json`` and ``<out>/bench_projection.png``.

Usage: ``python experiments/bench_projection.py [--quick] [--out results] [--threads N]``
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


def load(name: str, device: str | torch.device = "cpu"):
    """The benchmark's model ``name`` (a zoo name or ``"resnet50"``) on ``device``."""
    if name == "resnet50":  # not in the zoo: torchvision's, random init
        import torchvision

        from deconv.zoo.registry import LoadedModel

        torch.manual_seed(0)
        model = torchvision.models.resnet50(weights=None).eval().to(device)
        return LoadedModel(model, "resnet50", "torchvision resnet50(weights=None), random init",
                           {}, None)
    try:
        return deconv.load_model(name, device=device,
                                 weights=None if name == "vgg16" else "default")
    except Exception as exc:  # hed-vgg16's weight package missing: random-init VGG16 instead
        print(f"{name} unavailable ({exc}); using random-init vgg16")
        return deconv.load_model("vgg16", device=device, weights=None)


def _captum_once(model, module, image, unit):
    from captum.attr import NeuronDeconvolution

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return NeuronDeconvolution(model, module).attribute(
            image.clone().requires_grad_(True), neuron_selector=tuple(unit))[0]


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _timed(fn):
    """``(fn(), wall seconds)``, CUDA synchronized before each clock reading."""
    _sync()
    start = time.perf_counter()
    out = fn()
    _sync()
    return out, time.perf_counter() - start


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest per-map max-abs difference relative to the reference map's max."""
    scale = b.flatten(1).abs().amax(dim=1).clamp_min(1e-30)
    return ((a - b).flatten(1).abs().amax(dim=1) / scale).max().item()


def bench_layer(loaded, images: torch.Tensor, layer, n_units: int, n_captum: int, n_bf16: int,
                chunk_size: int, explicit: bool) -> dict:
    """Time the engines and captum on the ``n_units`` strongest units of ``layer``."""
    generic = GenericDeconvnet(loaded, skip_normalization=False if not explicit else None)
    name = generic.resolve(layer)
    units = generic.top_units(images, layer, n_units).units
    record = {"model": loaded.name, "layer": layer, "module": name, "units": len(units),
              "chunk_size": chunk_size}
    outputs = {}
    engines = {"generic": generic}
    if explicit:  # the generic engine's own autograd path too, where it takes the explicit way
        engines = {"explicit": Deconvnet(loaded), **engines,
                   "generic_autograd": GenericDeconvnet(loaded, windowed=False)}
    record["generic_takes_explicit_path"] = generic.uses_explicit_path(layer)
    for label, engine in engines.items():
        engine.project(images, layer, units[:2], seed="unit")  # warm-up (tracing, allocator)
        cpu = time.process_time()
        outputs[label], seconds = _timed(lambda e=engine: e.project(
            images, layer, units, seed="unit", chunk_size=chunk_size))
        record[f"{label}_cpu_seconds"] = time.process_time() - cpu
        record[f"{label}_seconds"] = seconds
        record[f"{label}_units_per_s"] = len(units) / seconds

    subset = torch.linspace(0, len(units) - 1, min(n_captum, len(units))).round().long()
    module = loaded.model.get_submodule(name)
    _captum_once(loaded.model, module, images[:1], units[0, 1:].tolist())  # warm-up
    cpu = time.process_time()
    refs, captum_s = _timed(lambda: torch.stack([
        _captum_once(loaded.model, module, images[i:i + 1], (c, y, x))
        for i, c, y, x in units[subset].tolist()]))
    cpu_per_unit = (time.process_time() - cpu) / len(subset)
    per_unit = captum_s / len(subset)
    record.update({"captum_units_timed": len(subset), "captum_seconds_timed": captum_s,
                   "captum_seconds_per_unit": per_unit, "captum_units_per_s": 1.0 / per_unit,
                   "captum_seconds_extrapolated": per_unit * len(units),
                   "captum_cpu_seconds_per_unit": cpu_per_unit})
    for label in engines:
        record[f"{label}_speedup"] = per_unit * len(units) / record[f"{label}_seconds"]
        record[f"{label}_speedup_cpu_time"] = (cpu_per_unit * len(units)
                                               / record[f"{label}_cpu_seconds"])
        record[f"{label}_max_relative_difference_vs_captum"] = _relative(
            outputs[label][subset], refs)
    main = "explicit" if explicit else "generic"
    record["speedup"] = record[f"{main}_speedup"]
    record["speedup_engine"] = main
    record["outputs_agree"] = all(record[f"{label}_max_relative_difference_vs_captum"] < 1e-4
                                  for label in engines)
    if explicit:
        record["generic_vs_explicit_max_relative_difference"] = _relative(
            outputs["generic"], outputs["explicit"])

    if n_bf16:
        rows = torch.linspace(0, len(units) - 1, min(n_bf16, len(units))).round().long()
        approx = GenericDeconvnet(loaded, skip_normalization=generic.skip_normalization,
                                  compute_dtype=torch.bfloat16)
        approx.project(images, layer, units[:2], seed="unit")
        got, seconds = _timed(lambda: approx.project(images, layer, units[rows], seed="unit",
                                                     chunk_size=chunk_size))
        exact = outputs["generic"][rows]
        record.update({
            "bf16_units_timed": len(rows), "bf16_units_per_s": len(rows) / seconds,
            "bf16_max_relative_difference": _relative(got, exact),
            "bf16_relative_l2_error": ((got - exact).norm() / exact.norm()).item(),
        })
    text = ", ".join(f"{label} {record[f'{label}_units_per_s']:.2f}/s "
                     f"({record[f'{label}_speedup']:.2f}x)" for label in engines)
    print(f"{loaded.name} {layer} ({name}), {len(units)} units: {text}; captum "
          f"{record['captum_units_per_s']:.3f}/s on {len(subset)}; agree "
          f"{record['outputs_agree']}", flush=True)
    return record


def _figure(runs: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    labels = [f"{r['model']}\n{r['layer']}" for r in runs]
    xs = list(range(len(runs)))
    bars = [("explicit_units_per_s", "deconv.Deconvnet (explicit)", -0.3),
            ("generic_units_per_s", "deconv.GenericDeconvnet", -0.1),
            ("generic_autograd_units_per_s", "GenericDeconvnet(windowed=False)", 0.1),
            ("captum_units_per_s", "captum NeuronDeconvolution (per unit)", 0.3)]
    for key, label, offset in bars:
        pts = [(x + offset, r[key], r.get(key.replace("units_per_s", "speedup")))
               for x, r in zip(xs, runs) if key in r]
        ax.bar([p[0] for p in pts], [p[1] for p in pts], 0.2, label=label)
        for x, rate, speedup in pts:
            if speedup is not None:  # our engines: speed-up over captum on the bar
                ax.text(x, rate * 1.1, f"{speedup:.1f}x", ha="center", va="bottom", fontsize=6,
                        rotation=90)
    lowest = min(r["captum_units_per_s"] for r in runs)
    ax.set_yscale("log")
    ax.set_ylim(bottom=lowest / 2, top=max(r.get(k, 0) for r in runs for k, _, _ in bars) * 8)
    ax.set_xticks(xs, labels, fontsize=7)
    ax.set_ylabel("projections / second")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def workloads(args) -> list[tuple[str, object, int, bool]]:
    """(model, layer, units, explicit engine applies) per run, headline first."""
    vgg = [(args.model, args.layer, args.units, True)]
    vgg += [(args.model, int(v), args.more_units, True)
            for v in args.more_layers.split(",") if v.strip()]
    resnet = [("resnet50", name, int(n), False) for name, n in
              (item.split(":") for item in args.resnet_layers.split(",") if item.strip())]
    return vgg + resnet


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, ``--quick`` applied."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hed-vgg16", help="a VGG16 of the zoo")
    parser.add_argument("--layer", type=int, default=3, help="paper layer of the headline ratio")
    parser.add_argument("--units", type=int, default=1024, help="units of the headline layer")
    parser.add_argument("--captum-units", type=int, default=30,
                        help="units captum is timed on (per-unit time is extrapolated)")
    parser.add_argument("--more-layers", default="1,2,4,5",
                        help="comma-separated paper layers timed with --more-units units")
    parser.add_argument("--more-units", type=int, default=64)
    parser.add_argument("--resnet-layers", default="layer3:1024,layer4:512",
                        help="comma-separated resnet50 module:units ('' to skip)")
    parser.add_argument("--bf16-units", type=int, default=32,
                        help="units the bfloat16 backward is timed on (0: skip)")
    parser.add_argument("--size", type=int, default=224, help="input side in pixels")
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 112 px, few units, hed-vgg16 layers 3 and 5, resnet50 "
                             "layer3")
    parser.add_argument("--out", default="results", help="output directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.units, args.captum_units, args.more_units = 112, 16, 2, 8
        args.more_layers, args.resnet_layers, args.bf16_units = "5", "layer3:16", 4
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and write the JSON and PNG; returns the JSON record."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    runs, sources = [], {}
    models = {}
    for model_name, layer, n_units, explicit in workloads(args):
        if model_name not in models:
            models[model_name] = load(model_name)
        loaded = models[model_name]
        sources[loaded.name] = loaded.source
        images = torch.stack([loaded.preprocess(s.image, args.size) for s in sample_images()])
        primary = not runs
        runs.append(bench_layer(loaded, images, layer, n_units,
                                args.captum_units if primary else min(args.captum_units, 20),
                                args.bf16_units, args.chunk_size, explicit))
    head = runs[0]
    vgg_runs = [r for r in runs if "explicit_speedup" in r]
    resnet_runs = [r for r in runs if r["model"] == "resnet50"]
    targets = {
        "resnet50_generic_at_least_1.8x_captum": all(r["speedup"] >= 1.8 for r in resnet_runs),
        "explicit_at_least_1.8x_captum_every_vgg_layer": all(r["explicit_speedup"] >= 1.8
                                                             for r in vgg_runs),
        # where the generic engine takes the explicit way both run the same code: equal up to
        # timing noise (10%)
        "generic_at_least_as_fast_as_explicit": all(
            r["generic_units_per_s"] >= 0.9 * r["explicit_units_per_s"] for r in vgg_runs),
    }
    record = {
        "benchmark": "deconvnet projections per second, our batched engines vs captum "
                     "NeuronDeconvolution called once per unit",
        "model_sources": sources, "input_size": args.size, "images": len(sample_images()),
        "device": "cpu", "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "captum": __import__("captum").__version__,
        "platform": platform.platform(), "quick": args.quick,
        "units_chosen_as": "strongest activations of the layer over the sample photos",
        "seed": "unit (1), as captum's neuron methods",
        "captum_timing": "captum timed on an evenly spaced subset of the units; its per-unit "
                         "time is extrapolated to all units; outputs compared on that subset",
        "speedup": "captum's extrapolated time over ours for the same units; the explicit "
                   "engine's where it applies (hed-vgg16), else the generic engine's",
        "bf16": "GenericDeconvnet(compute_dtype=torch.bfloat16): approximate; error relative to "
                "the exact float32 projections of the same units",
        "caveat": "measured on a shared, loaded machine; absolute rates are noisy, the ratio "
                  "less so; *_speedup_cpu_time compares process CPU time (less sensitive to "
                  "other load)",
        "generic_autograd": "GenericDeconvnet(windowed=False): its autograd path (one forward "
                            "per image, receptive-field crops), where by default it takes the "
                            "explicit engine's way",
        "headline_model": head["model"], "headline_layer": head["layer"],
        "headline_units": head["units"], "ratio": head["speedup"],
        "targets_met": targets,
        "runs": runs,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_projection.json").write_text(json.dumps(record, indent=2))
    _figure(runs, out / "bench_projection.png",
            f"{args.size} px, CPU x{torch.get_num_threads()}: projections/s (label: speed-up "
            f"over captum)")
    print(f"targets: {targets}; wrote {out / 'bench_projection.json'}")
    return record


if __name__ == "__main__":
    main()
