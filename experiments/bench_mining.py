"""Benchmark: top-k mining throughput as a ratio to the model's plain forward pass.

Same images, same batches, same thread count: ``plain`` runs ``model(x)`` under ``no_grad``
over pre-stacked batches (the cheapest possible baseline); ``mining`` runs
:func:`deconv.mine_top_k` on the same tensor (its DataLoader, hooks and running top-k merge
included) with the full forward (``stop_early=False``: the pure overhead) and with the default
early stop (layers after the deepest mined one skipped). Each timing is the best of
``--repeats`` runs after one warm-up batch. Ratio = mining images/s / plain images/s (target
>= 0.8).

Writes ``results/bench_mining.json`` as ``{"config": ..., "modes": {"single_process": ...}}``;
each mode updates its own entry and keeps the others.

``--distributed`` measures :func:`deconv.mining.distributed.mine_top_k_distributed` with 1 and
2 Gloo processes (``torch.multiprocessing`` spawn, loopback, ``--threads-per-process`` each):
wall time from a barrier after model loading and a warm-up forward to the merged result on
rank 0 (sharding, mining, gather and exact merge included; process start-up excluded), best of
``--repeats``; it also checks that every process count gives the identical result. Stored under
``modes["distributed_gloo"]``.

Usage: ``python experiments/bench_mining.py [--quick] [--images 128] [--size 128]
[--distributed [--processes 1 2] [--threads-per-process 1]]``
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


def _distributed_worker(rank: int, world: int, init_file: str, args: argparse.Namespace,
                        out_file: str) -> None:
    """One rank: load, warm up, then time the sharded mining between barriers."""
    import os

    from deconv.distributed import barrier, distributed_session
    from deconv.mining.distributed import mine_top_k_distributed

    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only
    torch.set_num_threads(args.threads_per_process)
    loaded = deconv.load_model(args.model)
    layers = [int(x) if x.isdigit() else x for x in args.layers]
    images = torch.randn(args.images, 3, args.size, args.size,
                         generator=torch.Generator().manual_seed(0))
    with distributed_session(backend="gloo", init_method=f"file://{init_file}", rank=rank,
                             world_size=world):
        with torch.no_grad():
            loaded.model(images[:1])  # warm-up
        times, merged = [], None
        for _ in range(args.repeats):
            barrier()
            start = time.perf_counter()
            merged = mine_top_k_distributed(loaded, images, layers, k=args.k,
                                            batch_size=args.batch_size, progress=False)
            barrier()
            times.append(time.perf_counter() - start)
        if rank == 0:
            merged.meta["bench_seconds"] = min(times)
            merged.save(out_file)


def distributed_mode(args: argparse.Namespace) -> dict:
    """Throughput of sharded mining with each process count in ``args.processes``."""
    import tempfile

    import torch.multiprocessing as mp

    from deconv.mining import TopKResult

    entry: dict = {"config": {"backend": "gloo", "launcher": "torch.multiprocessing.spawn",
                              "threads_per_process": args.threads_per_process,
                              "model": args.model, "layers": args.layers,
                              "images": args.images, "size": args.size,
                              "batch_size": args.batch_size, "k": args.k,
                              "repeats": args.repeats, "cpus": os_cpu_count(),
                              "quick": args.quick, "torch": torch.__version__,
                              "caveat": "shared machine: other jobs may distort the timings; "
                                        "with 2 CPUs, 2 processes only scale if both are idle",
                              "timed": "barrier to merged result on rank 0 (mining, gather, "
                                       "merge; start-up and model loading excluded)"}}
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for world in args.processes:
            out_file = f"{scratch}/merged{world}.pt"
            mp.spawn(_distributed_worker, nprocs=world, join=True,
                     args=(world, f"{scratch}/pg{world}", args, out_file))
            results[world] = TopKResult.load(out_file)
            seconds = results[world].meta["bench_seconds"]
            entry[f"processes_{world}"] = {
                "seconds": round(seconds, 3),
                "images_per_second": round(args.images / seconds, 2),
                "per_rank_images": [r["images_seen"] for r in
                                    results[world].meta["distributed"]["ranks"]]}
    first = args.processes[0]
    entry["identical_results"] = all(r == results[first] for r in results.values())
    for world in args.processes[1:]:
        entry[f"speedup_{world}_vs_{first}"] = round(
            entry[f"processes_{world}"]["images_per_second"]
            / entry[f"processes_{first}"]["images_per_second"], 3)
    return entry


def os_cpu_count() -> int | None:
    """CPUs this process may use."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def write_record(out: Path, config: dict | None, modes: dict) -> dict:
    """Update ``out/bench_mining.json``: replace the given modes, keep the other entries."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench_mining.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    if config is not None:
        record["config"] = config
    record.setdefault("modes", {}).update(modes)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return record


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
    parser.add_argument("--distributed", action="store_true",
                        help="time sharded mining with Gloo processes instead")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2],
                        help="process counts to time with --distributed")
    parser.add_argument("--threads-per-process", type=int, default=1)
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = "results/quick" if args.quick else "results"
    if args.quick:
        args.images, args.size, args.repeats = 32, 64, 1
    if args.distributed:
        if any(p < 1 for p in args.processes):
            raise ValueError(f"--processes must be positive, got {args.processes}")
        entry = distributed_mode(args)
        print(json.dumps(entry, indent=1))
        return write_record(Path(args.out), None, {"distributed_gloo": entry})
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
    config, modes = {"model": args.model, "layers": args.layers, "images": n,
                   "size": args.size, "batch_size": args.batch_size, "k": args.k,
                   "repeats": args.repeats, "threads": torch.get_num_threads(),
                   "device": "cpu", "torch": torch.__version__,
                   "machine": platform.machine(), "quick": args.quick,
                   "caveat": "shared machine: other jobs may distort the timings"}, {
        "single_process": {
            "plain_forward_images_per_s": round(n / t_plain, 2),
            "mining_full_forward_images_per_s": round(n / t_full, 2),
            "mining_stop_early_images_per_s": round(n / t_early, 2),
            "ratio_full_forward": round(t_plain / t_full, 3),
            "ratio_stop_early": round(t_plain / t_early, 3)}}
    print(json.dumps(modes, indent=1))
    return write_record(Path(args.out), config, modes)


if __name__ == "__main__":
    main()
