"""Benchmark: top-k mining throughput as a ratio to the model's plain forward pass.

Same images, same batches, same thread count: ``plain`` runs ``model(x)`` under ``no_grad``
over pre-stacked batches (the cheapest possible baseline); ``mining`` runs
:func:`deconv.mine_top_k` on the same tensor (its DataLoader, hooks and running top-k merge
included) with the full forward (``stop_early=False``: the pure overhead) and with the default
early stop (layers after the deepest mined one skipped). Each timing is the best of
``--repeats`` runs after one warm-up batch. Ratio = mining images/s / plain images/s (target
>= 0.8).

Writes ``results/bench_mining.json`` as ``{"config": ..., "modes": {"single_process": ...}}``;
other modes (e.g. distributed shards merged with ``merge_top_k``) add entries under ``modes``.

Usage: ``python experiments/bench_mining.py [--quick] [--images 128] [--size 128]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import deconv
from deconv.mining import mine_top_k


def best_time(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> dict:
    """Time plain forward vs mining; returns the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hed-vgg16")
    parser.add_argument("--layers", nargs="+", default=["1", "2", "3", "4", "5"])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--k", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None,
                        help="output directory (default results; results/quick with --quick)")
    parser.add_argument("--quick", action="store_true", help="32 images of 64 px, 1 repeat")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = "results/quick" if args.quick else "results"
    if args.quick:
        args.images, args.size, args.repeats = 32, 64, 1
    loaded = deconv.load_model(args.model)
    layers = [int(x) if x.isdigit() else x for x in args.layers]
    images = torch.randn(args.images, 3, args.size, args.size,
                         generator=torch.Generator().manual_seed(0))
    batches = list(images.split(args.batch_size))
    model = loaded.model

    @torch.no_grad()
    def plain() -> None:
        for batch in batches:
            model(batch)

    def mine(stop_early: bool):
        return lambda: mine_top_k(loaded, images, layers, k=args.k, batch_size=args.batch_size,
                                  progress=False, stop_early=stop_early)

    plain()  # warm-up (allocator, oneDNN kernels)
    t_plain = best_time(plain, args.repeats)
    t_full = best_time(mine(False), args.repeats)
    t_early = best_time(mine(True), args.repeats)
    n = args.images
    record = {
        "config": {"model": args.model, "layers": args.layers, "images": n,
                   "size": args.size, "batch_size": args.batch_size, "k": args.k,
                   "repeats": args.repeats, "threads": torch.get_num_threads(),
                   "device": "cpu", "torch": torch.__version__,
                   "machine": platform.machine(), "quick": args.quick,
                   "caveat": "shared machine: other jobs may distort the timings"},
        "modes": {"single_process": {
            "plain_forward_images_per_s": round(n / t_plain, 2),
            "mining_full_forward_images_per_s": round(n / t_full, 2),
            "mining_stop_early_images_per_s": round(n / t_early, 2),
            "ratio_full_forward": round(t_plain / t_full, 3),
            "ratio_stop_early": round(t_plain / t_early, 3)}}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_mining.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record["modes"], indent=1))
    return record


if __name__ == "__main__":
    main()
