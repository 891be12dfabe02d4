"""Benchmark: occlusion maps by captum, a naive batched sweep, incremental inference, drill-down.

For each model (random-init torchvision VGG16, AlexNet, ResNet-18, ResNet-50, MobileNet-v2 and
the zoo's efficientnet-lite0: speed does not depend on the weights) at 224 px, a 32 px grey
square (0 in normalized input) at stride 8 (25 x 25 = 625 positions), the map is the softmax
probability of the unoccluded image's top class. Methods, each run in its
own subprocess, so its peak memory is its own. ``peak_extra_mb`` is the peak resident set
over the resident set right after the model is built (before any forward pass: the one-time
costs of the first forward count for every method alike). glibc keeps freed heap memory, so
the peak also depends on how a method's allocations fragment; ``peak_live_mb`` is the same
peak measured again with ``MALLOC_MMAP_THRESHOLD_=65536`` (blocks of 64 KiB or more are
returned to the system when freed), closer to the memory a method actually holds. Methods:

* ``captum``: ``captum.attr.Occlusion`` on the softmax-wrapped model, for several
  ``perturbations_per_eval``; the best is the reference. Its cost is linear in the positions,
  so it is timed on a subset (the non-overlapping windows at stride = patch, whose
  attributions equal ``p0 - p(occluded)`` exactly) and extrapolated to the full grid.
* ``naive``: our batched forward of the occluded images, on the same subset, extrapolated.
* ``incremental``: exact incremental inference, full grid, ``--batch-size`` positions per
  batch: the chain engine (:mod:`deconv.occlusion.incremental`) for VGG16 and AlexNet, the graph
  engine (:mod:`deconv.occlusion.graph_engine`) for the residual and depthwise networks
  (``engine`` says which); ``incremental_lean``: the same with ``--lean-batch-size`` (and
  ``low_memory=True`` for the chain engine: less memory, a little slower).
* ``approximate``: the projective-field threshold (``--max-fraction``), full grid;
  ``drilldown``: the same plus adaptive drill-down (``--coarse``, ``--refine``). Quality is the
  SSIM of their maps against the exact one.

It also counts multiply-accumulates: the naive sweep's, the incremental windows' actually
computed, and the minimum (each position's exact changed region only): ``flop_limit`` is
naive / minimum, the best speed-up any exact incremental method can reach. Timings on a shared
machine vary; the ratios are steadier. Writes ``bench_occlusion.json`` and ``bench_occlusion.png``.

Usage: ``python experiments/bench_occlusion.py [--quick] [--out results]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS = ("vgg16", "alexnet", "resnet18", "resnet50", "mobilenet_v2", "efficientnet-lite0")


# ---------------------------------------------------------------------------- worker side
def _reset_peak_memory() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _memory_mb() -> tuple[float, float]:
    """(current RSS, peak RSS since the last reset) in MiB, from /proc/self/status."""
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, amount = line.split(":")
                values[key] = float(amount.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


# Random-init torchvision classifiers that the zoo does not list, preprocessed the ImageNet way.
TORCHVISION_MODELS = ("resnet18", "resnet50", "mobilenet_v2")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _load(name: str, picture, size: int):
    """(model in eval mode, preprocessed image [3, size, size]) with random weights."""
    if name in TORCHVISION_MODELS:
        import torchvision
        import torchvision.transforms.functional as TF

        model = getattr(torchvision.models, name)(weights=None).eval()
        image = TF.center_crop(TF.resize(TF.to_tensor(picture), size, antialias=True), size)
        return model, TF.normalize(image, IMAGENET_MEAN, IMAGENET_STD)
    from deconv import load_model

    loaded = load_model(name, weights=None)
    return loaded.model.eval(), loaded.preprocess(picture, size=size)


def _setup(spec: dict):
    import torch

    from deconv.samples import sample_images

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    model, image = _load(spec["model"], sample_images([spec["image"]])[0].image, spec["size"])
    model_rss = _memory_mb()[0]  # before any forward pass
    reset = _reset_peak_memory()
    with torch.no_grad():
        base = torch.softmax(model(image[None]), 1)[0]
    target = int(base.argmax())
    return torch, model, image, target, float(base[target]), model_rss, reset


def _boxes(size: int, patch: int, stride: int):
    import torch

    from deconv.occlusion.grid import occluder_boxes

    boxes, rows, cols = occluder_boxes(size, size, (patch, patch), (stride, stride))
    return torch.as_tensor(boxes), rows, cols


def _worker(spec: dict, out: str) -> None:
    torch, model, image, target, p0, model_rss, reset = _setup(spec)
    from deconv.occlusion.approximate import drill_down_map
    from deconv.occlusion.engines import make_incremental_engine
    from deconv.occlusion.naive import naive_occlusion_outputs

    method = spec["method"]
    boxes, rows, cols = _boxes(spec["size"], spec["patch"], spec["stride"])
    subset, _, _ = _boxes(spec["size"], spec["patch"], spec["subset_stride"])
    result: dict = {"target": target, "p0": p0}

    def prob(outputs):
        return torch.softmax(outputs.output, 1)[:, target]

    start = time.perf_counter()
    with torch.no_grad():
        if method == "captum":
            from captum.attr import Occlusion

            wrapped = torch.nn.Sequential(model, torch.nn.Softmax(dim=1)).eval()
            attribution = Occlusion(wrapped).attribute(
                image[None], sliding_window_shapes=(3, spec["patch"], spec["patch"]),
                strides=(3, spec["subset_stride"], spec["subset_stride"]), baselines=0.0,
                target=target, perturbations_per_eval=spec["ppe"])[0, 0]
            values = torch.stack([p0 - attribution[y0, x0] for y0, _, x0, _ in subset.tolist()])
            positions = len(subset)
        elif method == "naive":
            values = prob(naive_occlusion_outputs(model, image, 0.0, subset,
                                                  batch_size=spec["batch_size"]))
            positions = len(subset)
        elif method == "incremental":
            with make_incremental_engine(model, image, 0.0, batch_size=spec["batch_size"],
                                         low_memory=spec.get("low_memory", False)) as engine:
                values = prob(engine.outputs(boxes))
                result["work"] = engine.work
                result["engine"] = type(engine).__name__
            positions = len(boxes)
        else:
            with make_incremental_engine(model, image, 0.0, batch_size=spec["batch_size"],
                                         max_fraction=spec["max_fraction"]) as engine:
                drill = drill_down_map(engine, boxes, (rows, cols), prob,
                                       coarse=spec["coarse"], refine=spec["refine"])
            values = drill.grid.reshape(-1)
            positions = len(boxes)
            result["evaluated_fraction"] = drill.evaluated_fraction
    seconds = time.perf_counter() - start
    rss, peak = _memory_mb()
    result.update(seconds=seconds, positions=positions, model_rss_mb=model_rss,
                  peak_mb=peak if reset else None,
                  peak_extra_mb=(peak - model_rss) if reset else None,
                  linear_macs=sum(m.in_features * m.out_features for m in model.modules()
                                  if isinstance(m, torch.nn.Linear)))
    np.save(out + ".npy", values.double().cpu().numpy())
    Path(out + ".json").write_text(json.dumps(result))


def _run_worker(spec: dict, tmp: str) -> tuple[dict, np.ndarray]:
    out = os.path.join(tmp, f"{spec['model']}_{spec['method']}_{spec.get('ppe', '')}"
                       f"{spec.get('tag', '')}{'_live' if spec.get('live') else ''}"
                       f"_{spec['batch_size']}")
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]),
               MKL_NUM_THREADS=str(spec["threads"]))
    if spec.get("live"):
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec),
           "--worker-out", out]
    subprocess.run(cmd, check=True, env=env)
    return json.loads(Path(out + ".json").read_text()), np.load(out + ".npy")


# ---------------------------------------------------------------------------- analysis
def _flops(work: dict, linear_macs: int, positions: int) -> dict:
    conv = [v for v in work.values() if v["module"] == "Conv2d"]
    naive = sum(v["macs_per_output"] * v["full_outputs"] * v["positions"] for v in conv)
    window = sum(v["macs_per_output"] * v["window_outputs"] for v in conv)
    region = sum(v["macs_per_output"] * v["region_outputs"] for v in conv)
    head = linear_macs * positions
    return {"naive_conv_macs": naive, "incremental_conv_macs": window,
            "minimal_conv_macs": region, "head_macs": head,
            "flop_limit_conv": naive / region, "flop_ratio_achieved_conv": naive / window,
            "flop_limit_network": (naive + head) / (region + head),
            "flop_ratio_achieved_network": (naive + head) / (window + head)}


def _ssim(exact: np.ndarray, approx: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    span = float(exact.max() - exact.min()) or 1.0
    return float(structural_similarity(exact, approx, data_range=span))


def _bench_model(name: str, args, tmp: str) -> dict:
    base = {"model": name, "size": args.size, "patch": args.patch, "stride": args.stride,
            "subset_stride": args.subset_stride, "threads": args.threads, "image": args.image,
            "batch_size": args.batch_size}
    _, rows, cols = _boxes(args.size, args.patch, args.stride)
    subset, _, _ = _boxes(args.size, args.patch, args.subset_stride)
    full = rows * cols
    # Positions of the subset inside the full grid (the subset stride is a multiple).
    starts = [(y0, x0) for y0, _, x0, _ in subset.tolist()]
    in_grid = [(y0 // args.stride) * cols + x0 // args.stride for y0, x0 in starts]
    report: dict = {"grid": [rows, cols], "positions": full, "subset_positions": len(subset)}
    captum = {}
    for ppe in args.ppe:
        info, values = _run_worker(dict(base, method="captum", ppe=ppe), tmp)
        info["seconds_full_extrapolated"] = info["seconds"] / info["positions"] * full
        captum[ppe] = (info, values)
        print(f"  {name} captum ppe={ppe}: {info['seconds']:.1f} s for {info['positions']}"
              f" positions", flush=True)
    best_ppe = min(captum, key=lambda k: captum[k][0]["seconds_full_extrapolated"])
    captum_info, captum_values = captum[best_ppe]
    naive_info, naive_values = _run_worker(dict(base, method="naive"), tmp)
    naive_info["seconds_full_extrapolated"] = naive_info["seconds"] / naive_info["positions"] \
        * full
    print(f"  {name} naive: {naive_info['seconds']:.1f} s", flush=True)
    inc_info, inc_values = _run_worker(dict(base, method="incremental"), tmp)
    print(f"  {name} incremental: {inc_info['seconds']:.1f} s", flush=True)
    lean = {"method": "incremental", "batch_size": args.lean_batch_size, "low_memory": True,
            "tag": "lean"}
    lean_info, lean_values = _run_worker(dict(base, **lean), tmp)
    print(f"  {name} incremental (batch {args.lean_batch_size}): {lean_info['seconds']:.1f} s",
          flush=True)
    live = {key: _run_worker(dict(base, **spec, live=True), tmp)[0]["peak_extra_mb"]
            for key, spec in (("captum", {"method": "captum", "ppe": best_ppe}),
                              ("incremental", {"method": "incremental"}),
                              ("incremental_lean", lean))}
    print(f"  {name} live peaks (MB): {live}", flush=True)
    approx = {}
    for key, coarse, refine in (("approximate", 1, 0.0),
                                ("drilldown", args.coarse, args.refine)):
        approx[key] = _run_worker(dict(base, method="approximate", max_fraction=args.max_fraction,
                                       coarse=coarse, refine=refine, tag=key), tmp)
        print(f"  {name} {key}: {approx[key][0]['seconds']:.1f} s", flush=True)
    t_captum = captum_info["seconds_full_extrapolated"]
    report["captum"] = {
        "best_perturbations_per_eval": best_ppe,
        "settings": {str(k): {key: v[0][key] for key in
                              ("seconds", "positions", "seconds_full_extrapolated",
                               "peak_extra_mb")} for k, v in captum.items()},
        "seconds_full": t_captum, "extrapolated": True,
        "peak_extra_mb": captum_info["peak_extra_mb"], "peak_live_mb": live["captum"]}
    report["naive"] = {"seconds_full": naive_info["seconds_full_extrapolated"],
                       "extrapolated": True, "batch_size": args.batch_size,
                       "peak_extra_mb": naive_info["peak_extra_mb"]}
    flops = _flops(inc_info["work"], inc_info["linear_macs"], full)
    speed_vs_naive = naive_info["seconds_full_extrapolated"] / inc_info["seconds"]
    report["incremental"] = {
        "seconds_full": inc_info["seconds"], "extrapolated": False,
        "speedup_vs_captum": t_captum / inc_info["seconds"],
        "speedup_vs_naive": speed_vs_naive,
        "fraction_of_flop_limit_conv": speed_vs_naive / flops["flop_limit_conv"],
        "fraction_of_flop_limit_network": speed_vs_naive / flops["flop_limit_network"],
        "max_abs_diff_prob_vs_naive": float(np.abs(inc_values[in_grid] - naive_values).max()),
        "max_abs_diff_prob_vs_captum": float(np.abs(inc_values[in_grid] - captum_values).max()),
        "peak_extra_mb": inc_info["peak_extra_mb"], "peak_live_mb": live["incremental"],
        "batch_size": args.batch_size, "engine": inc_info["engine"], **flops}
    report["incremental_lean"] = {
        "seconds_full": lean_info["seconds"], "extrapolated": False,
        "speedup_vs_captum": t_captum / lean_info["seconds"],
        "speedup_vs_naive": naive_info["seconds_full_extrapolated"] / lean_info["seconds"],
        "max_abs_diff_prob_vs_naive": float(np.abs(lean_values[in_grid] - naive_values).max()),
        "peak_extra_mb": lean_info["peak_extra_mb"], "peak_live_mb": live["incremental_lean"],
        "batch_size": args.lean_batch_size}
    exact = inc_values.reshape(rows, cols)
    for key, (info, values) in approx.items():
        grid = values.reshape(rows, cols)
        report[key] = {
            "seconds_full": info["seconds"], "extrapolated": False,
            "speedup_vs_captum": t_captum / info["seconds"],
            "speedup_vs_naive": naive_info["seconds_full_extrapolated"] / info["seconds"],
            "speedup_vs_incremental": inc_info["seconds"] / info["seconds"],
            "ssim_vs_exact": _ssim(exact, grid),
            "max_abs_diff_prob_vs_exact": float(np.abs(exact - grid).max()),
            "evaluated_fraction": info["evaluated_fraction"],
            "max_fraction": args.max_fraction, "coarse": 1 if key == "approximate" else
            args.coarse, "refine": 0.0 if key == "approximate" else args.refine,
            "peak_extra_mb": info["peak_extra_mb"]}
    report["maps"] = {"exact": exact.tolist(),
                      "approximate": approx["approximate"][1].reshape(rows, cols).tolist(),
                      "drilldown": approx["drilldown"][1].reshape(rows, cols).tolist(),
                      "p0": inc_info["p0"], "target": inc_info["target"]}
    return report


def _plot(results: dict, path: Path) -> None:
    """Speed-ups (left) and, one row per model, the exact / approximate / drill-down maps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results["models"])
    rows = len(models)
    fig = plt.figure(figsize=(12, 1.9 * rows + 1.2))
    grid = fig.add_gridspec(rows, 4, width_ratios=[2.2, 1, 1, 1])
    bars = fig.add_subplot(grid[:, 0])
    methods = ["captum", "naive", "incremental", "incremental_lean", "approximate", "drilldown"]
    width = 0.8 / len(models)
    for i, name in enumerate(models):
        r = results["models"][name]
        t = r["captum"]["seconds_full"]
        speed = [t / r[m]["seconds_full"] for m in methods]
        bars.bar(np.arange(len(methods)) + i * width, speed, width, label=name)
    bars.set_xticks(np.arange(len(methods)) + width * (len(models) - 1) / 2,
                    [m.replace("incremental_", "") for m in methods], rotation=45, ha="right")
    bars.set_yscale("log")
    bars.set_ylabel("speed-up vs captum's fastest setting (x, log)")
    bars.set_title("exact and approximate occlusion, one thread", fontsize=9)
    bars.legend(fontsize=8)
    for i, name in enumerate(models):
        r = results["models"][name]
        exact = np.asarray(r["maps"]["exact"])
        low, high = float(exact.min()), float(exact.max())
        if high == low:  # a constant map: a scale around it, so equal maps get equal colours
            pad = max(abs(low) * 1e-3, 1e-12)
            low, high = low - pad, high + pad
        for j, key in enumerate(("exact", "approximate", "drilldown")):
            ax = fig.add_subplot(grid[i, 1 + j])
            shown = np.asarray(r["maps"][key])
            im = ax.imshow(shown, cmap="viridis", vmin=low, vmax=high)
            extra = f", SSIM {r[key]['ssim_vs_exact']:.2f}" if key != "exact" else ""
            flat = " (constant)" if shown.min() == shown.max() else ""
            ax.set_title(f"{name}: {key}{extra}{flat}", fontsize=6)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 2:
                bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
                bar.formatter.set_useOffset(False)  # plain values, no "1e-6 + 1e-3" offset
                bar.update_ticks()
                bar.ax.tick_params(labelsize=6)
    fig.suptitle("p(target class) per occluder position (random-init weights; shared scale per "
                 "row)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict | None:
    """Run the benchmark (or one worker, with ``--worker``); returns the results dict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: AlexNet only, stride 16, one captum setting")
    parser.add_argument("--out", default=str(ROOT / "results"))
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw <out>/bench_occlusion.png from its JSON, no timing")
    parser.add_argument("--models", nargs="+", default=None,
                        help=f"default: {' '.join(DEFAULT_MODELS)} (--quick: alexnet resnet18)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--ppe", type=int, nargs="+", default=[1, 16],
                        help="captum perturbations_per_eval settings to try")
    parser.add_argument("--batch-size", type=int, default=32, help="positions per batch")
    parser.add_argument("--lean-batch-size", type=int, default=4,
                        help="positions per batch of the low-memory incremental run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--image", default="coffee", help="sample image name")
    parser.add_argument("--max-fraction", type=float, default=0.6,
                        help="approximate: projective-field threshold")
    parser.add_argument("--coarse", type=int, default=2, help="approximate: coarse step")
    parser.add_argument("--refine", type=float, default=0.1,
                        help="approximate: fraction of positions refined exactly")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(json.loads(args.worker), args.worker_out)
        return None
    if args.plot_only:
        out = Path(args.out)
        _plot(json.loads((out / "bench_occlusion.json").read_text()), out / "bench_occlusion.png")
        return None
    if args.quick:
        args.models, args.stride, args.ppe = args.models or ["alexnet", "resnet18"], 16, [8]
    args.models = args.models or list(DEFAULT_MODELS)
    if args.patch % args.stride:
        raise ValueError("--patch must be a multiple of --stride (captum and the naive sweep "
                         "are timed on the non-overlapping windows at stride = patch, which "
                         "must lie on the grid)")
    args.subset_stride = args.patch
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"settings": {k: v for k, v in vars(args).items() if not k.startswith("worker")},
               "machine": {"cpus": os.cpu_count(), "threads": args.threads,
                           "note": "shared machine: absolute times vary, ratios are steadier"},
               "models": {}}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            print(f"{name}:", flush=True)
            results["models"][name] = _bench_model(name, args, tmp)
    results["total_seconds"] = time.perf_counter() - start
    name = "bench_occlusion_quick" if args.quick else "bench_occlusion"
    (out / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")
    _plot(results, out / f"{name}.png")
    for model, r in results["models"].items():
        inc, apx, dd = r["incremental"], r["approximate"], r["drilldown"]
        print(f"{model}: incremental {inc['speedup_vs_captum']:.1f}x vs captum "
              f"({inc['speedup_vs_naive']:.1f}x vs naive; FLOP limit {inc['flop_limit_conv']:.1f}x"
              f" conv, reached {inc['fraction_of_flop_limit_conv']:.0%}), max |dp| "
              f"{inc['max_abs_diff_prob_vs_naive']:.1e}; approximate "
              f"{apx['speedup_vs_captum']:.1f}x, SSIM {apx['ssim_vs_exact']:.3f}; drill-down "
              f"{dd['speedup_vs_captum']:.1f}x, SSIM {dd['ssim_vs_exact']:.3f}; peak extra MB "
              f"captum {r['captum']['peak_extra_mb']:.0f} / incremental "
              f"{inc['peak_extra_mb']:.0f} / lean {r['incremental_lean']['peak_extra_mb']:.0f} "
              f"(live: {r['captum']['peak_live_mb']:.0f} / {inc['peak_live_mb']:.0f} / "
              f"{r['incremental_lean']['peak_live_mb']:.0f}); lean "
              f"{r['incremental_lean']['speedup_vs_captum']:.1f}x vs captum")
    return results


if __name__ == "__main__":
    main()
