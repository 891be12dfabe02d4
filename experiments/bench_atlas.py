"""Benchmark: how long ``deconv atlas`` takes per stage, and how large the site is.

Two cases, each a fresh build in a temporary folder (deleted afterwards unless ``--keep``):

* ``zfnet-fashion``: the trained Fashion-MNIST ZFNet, paper layers 1-5 (352 channels), over
  the 10,000 test images, every channel with its optima (default 128 steps). Targets: at most
  5 minutes on 2 cores, site at most 25 MB.
* ``hed-vgg16``: paper layers 1-5 (1,472 channels) over the sample crops, with an optima
  budget of ``--vgg-optima`` channels per layer (default 1; the rest is filled in by later
  resumed runs; seconds per optimum are recorded per layer).
  Target: at most 20 minutes on 2 cores.

Each case records the seconds of every stage (mining, statistics, projections, optima,
pages), the wall and process CPU time of the whole build, the load average of the machine
before and after (other processes slow a shared machine down: compare CPU seconds), the
threads, the site size and the seconds per optimum, in ``results/bench_atlas.json``
(``results/quick/bench_atlas.json`` with ``--quick``: 200 images, layers 1-2, 2 steps).

Usage: ``python experiments/bench_atlas.py [--quick] [--cases zfnet-fashion hed-vgg16]
[--threads 2] [--images N] [--optima-steps N] [--vgg-optima 1] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"zfnet-fashion": {"seconds": 300, "site_mb": 25}, "hed-vgg16": {"seconds": 1200}}


def _mean_optimum_seconds(layer: dict) -> float | None:
    """Mean seconds per optimum of one layer of the manifest (None: no optimum yet)."""
    seconds = [m["optimum"]["seconds"] for m in layer["feature_maps"] if m.get("optimum")]
    return round(sum(seconds) / len(seconds), 3) if seconds else None


def run_case(name: str, args: argparse.Namespace, site: Path) -> dict:
    """Build one atlas from nothing and return its timings."""
    import deconv

    if name == "zfnet-fashion":
        data, layers = "fashion-mnist:test", [1, 2, 3, 4, 5]
        limit = args.images or (200 if args.quick else None)
        optima = None
    else:
        data, layers = "samples", [1, 2, 3, 4, 5]
        limit = args.images or (24 if args.quick else None)
        optima = args.vgg_optima
    if args.quick:
        layers = layers[:2]
        optima = 2
    steps = args.optima_steps if args.optima_steps is not None else (2 if args.quick else None)
    model = deconv.load_model(name)
    load = os.getloadavg()
    wall, cpu = time.perf_counter(), time.process_time()
    build = deconv.build_atlas(model, data, layers, site, limit=limit, optima=optima,
                               optima_steps=steps, progress=not args.no_progress)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    manifest = build.manifest
    record = {
        "data": manifest["data"]["source"], "images": manifest["layers"][0]["images"],
        "layers": [layer["name"] for layer in manifest["layers"]],
        "channels": sum(layer["channels"] for layer in manifest["layers"]),
        "optima_done": sum(layer["optima_done"] for layer in manifest["layers"]),
        "optima_steps": manifest["settings"]["optima"]["steps"],
        "stage_seconds": build.timings, "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1), "load_average_before": [round(x, 2) for x in load],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "seconds_per_optimum": manifest["timings"]["seconds_per_optimum_mean"],
        "seconds_per_optimum_by_layer": {
            layer["name"]: _mean_optimum_seconds(layer) for layer in manifest["layers"]},
        "site_mb": round(manifest["site_bytes"] / 1e6, 2), "files": len(manifest["files"]),
    }
    target = TARGETS[name]
    record["targets"] = dict(target, full_size=not args.quick and not args.images)
    record["meets_time_target"] = wall <= target["seconds"]
    if "site_mb" in target:
        record["meets_size_target"] = record["site_mb"] <= target["site_mb"]
    return record


def main(argv: list[str] | None = None) -> None:
    """Run the cases and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--cases", nargs="+", default=["zfnet-fashion", "hed-vgg16"],
                        choices=sorted(TARGETS))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--images", type=int, default=None, help="mine only N images")
    parser.add_argument("--optima-steps", type=int, default=None,
                        help="Adam steps per optimum (default: the atlas default)")
    parser.add_argument("--vgg-optima", type=int, default=1,
                        help="optima per layer for hed-vgg16 (default 1: each costs 6-60 s "
                             "at 128 px, see seconds_per_optimum_by_layer)")
    parser.add_argument("--keep", default=None, help="build in DIR/<case> and keep it")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--out", default=None, help="JSON path")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else ROOT / "results" / (
        "quick/bench_atlas.json" if args.quick else "bench_atlas.json")
    results = json.loads(out.read_text()) if out.is_file() else {}
    results["config"] = {"threads": args.threads, "torch": torch.__version__,
                         "cpu": platform.processor() or platform.machine(),
                         "cores_visible": os.cpu_count(), "quick": args.quick}
    results.setdefault("cases", {})
    for name in args.cases:
        scratch = Path(args.keep) / name if args.keep else Path(tempfile.mkdtemp()) / name
        if args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        try:
            record = run_case(name, args, scratch)
        finally:
            if not args.keep:
                shutil.rmtree(scratch.parent, ignore_errors=True)
        results["cases"][name] = record
        print(f"{name}: {record['wall_seconds']} s wall ({record['cpu_seconds']} s CPU), "
              f"stages {record['stage_seconds']}, site {record['site_mb']} MB")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
