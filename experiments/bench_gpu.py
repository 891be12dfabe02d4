"""GPU benchmark: mining (images/s), projections (units/s) and occlusion (maps/s) on CUDA.

The CPU benchmarks' workloads, run on one CUDA device:

* **mining**: :func:`deconv.mine_top_k` of hed-vgg16's paper layers 1-5 over ``--images``
  random images (224 px), against the plain forward pass of the same batches (ratio as in
  ``bench_mining.py``);
* **projections**: ``bench_projection.py``'s runs (hed-vgg16 paper layers 3 and 1, 2, 4, 5;
  resnet50 ``layer3`` and ``layer4``) with the explicit and generic engines, captum's
  ``NeuronDeconvolution`` per unit, the bfloat16 backward with its error;
* **occlusion**: :func:`deconv.occlusion_sweep` of the sample photo (224 px, patch 32, stride 8)
  on VGG16, AlexNet, ResNet-18, ResNet-50, MobileNet-v2 (random init) and efficientnet-lite0,
  with each registered occlusion method and captum's ``Occlusion``; maps/s = 1 / seconds;
* **distributed mining under torchrun with NCCL**: ``torchrun --nproc-per-node=<GPUs>`` runs
  :func:`deconv.mining.distributed.mine_top_k_distributed` on ``cuda:LOCAL_RANK`` with the NCCL
  backend and checks the merged result against one process mining everything.

CUDA timings synchronize the device before reading the clock. Without a CUDA device the script
says so and exits with status 0, writing nothing (the project builds and tests without one);
``--device cpu --quick`` runs every piece on the CPU at a tiny size (the NCCL check with the
Gloo backend), which the test suite uses as a smoke test.

Writes ``<out>/bench_gpu.json``. On a machine with a GPU: ``python experiments/bench_gpu.py``
(a few minutes), then commit ``results/bench_gpu.json``.

Usage: ``python experiments/bench_gpu.py [--device cuda] [--quick] [--out results]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench_projection  # noqa: E402  (the projection workloads, shared)

OCCLUSION_MODELS = ("vgg16", "alexnet", "resnet18", "resnet50", "mobilenet_v2",
                    "efficientnet-lite0")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> tuple[object, float]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start


def bench_mining(device: torch.device, n_images: int, size: int, batch_size: int) -> dict:
    """Images/s of top-k mining of hed-vgg16's paper layers 1-5 and of the plain forward."""
    import deconv
    from deconv.mining import mine_top_k

    loaded = deconv.load_model("hed-vgg16", device=device)
    images = torch.randn(n_images, 3, size, size, generator=torch.Generator().manual_seed(0))
    layers = sorted(loaded.layers)

    def plain():
        with torch.no_grad():
            for start in range(0, n_images, batch_size):
                loaded.model(images[start:start + batch_size].to(device, non_blocking=True))

    def mine():
        return mine_top_k(loaded, images, layers, k=9, batch_size=batch_size, device=device,
                          progress=False)

    plain()  # warm-up (cuDNN autotuning, allocator)
    _, plain_s = _timed(plain, device)
    mine()
    result, mine_s = _timed(mine, device)
    print(f"mining: {n_images / mine_s:.1f} images/s (plain forward {n_images / plain_s:.1f})",
          flush=True)
    return {"model": loaded.name, "layers": layers, "images": n_images, "size": size,
            "batch_size": batch_size, "mining_images_per_s": n_images / mine_s,
            "plain_forward_images_per_s": n_images / plain_s, "ratio": plain_s / mine_s,
            "top_value_layer_5": float(result.values[loaded.layers[layers[-1]]].max())}


def bench_projections(device: torch.device, args) -> list[dict]:
    """``bench_projection.py``'s runs on ``device``."""
    from deconv.samples import sample_images

    options = ["--size", str(args.size), "--chunk-size", str(args.chunk_size)]
    if args.quick:
        options.append("--quick")
    parsed = bench_projection.parse_args(options)
    runs, models = [], {}
    for index, (name, layer, n_units, explicit) in enumerate(bench_projection.workloads(parsed)):
        if name not in models:
            models[name] = bench_projection.load(name, device)
        loaded = models[name]
        images = torch.stack([loaded.preprocess(s.image, parsed.size)
                              for s in sample_images()]).to(device)
        runs.append(bench_projection.bench_layer(
            loaded, images, layer, n_units,
            parsed.captum_units if index == 0 else min(parsed.captum_units, 20),
            parsed.bf16_units, parsed.chunk_size, explicit))
    return runs


def _occlusion_model(name: str, device: torch.device, size: int):
    from deconv.samples import sample_images

    picture = sample_images(["coffee"])[0].image
    if name == "efficientnet-lite0":
        import deconv

        loaded = deconv.load_model(name, device=device)
        return loaded.model.eval(), loaded.preprocess(picture, size).to(device)
    import torchvision
    import torchvision.transforms.functional as TF

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval().to(device)
    image = TF.center_crop(TF.resize(TF.to_tensor(picture), size, antialias=True), size)
    image = TF.normalize(image, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    return model, image.to(device)


def bench_occlusion(device: torch.device, models, size: int, patch: int, stride: int,
                    batch_size: int) -> list[dict]:
    """Maps/s of :func:`deconv.occlusion_sweep` per method and of captum's ``Occlusion``."""
    return [_occlusion_one(name, device, size, patch, stride, batch_size) for name in models]


def _occlusion_one(name: str, device: torch.device, size: int, patch: int, stride: int,
                   batch_size: int) -> dict:
    from captum.attr import Occlusion

    from deconv.occlusion import occlusion_engines, occlusion_sweep

    model, image = _occlusion_model(name, device, size)
    with torch.no_grad():
        target = int(model(image[None]).argmax())
    record = {"model": name, "size": size, "patch": patch, "stride": stride,
              "batch_size": batch_size, "methods": {}}

    def sweep(method):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a fall-back is recorded, not shown
            return occlusion_sweep(model, image, patch=patch, stride=stride, fill=0.0,
                                   target=target, batch_size=batch_size, engine=method,
                                   progress=False)

    reference = None
    for method in occlusion_engines():
        try:
            sweep(method)  # warm-up
            result, seconds = _timed(lambda m=method: sweep(m), device)
        except Exception as exc:  # a method that does not apply to this model
            record["methods"][method] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            continue
        if reference is None:
            reference = result
        record["methods"][method] = {
            "seconds": seconds, "maps_per_s": 1.0 / seconds, "engine_used": result.method,
            "max_abs_difference_vs_first": float(
                (result.probability - reference.probability).abs().max())}
    occlusion = Occlusion(torch.nn.Sequential(model, torch.nn.Softmax(dim=1)))

    def captum():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return occlusion.attribute(image[None], sliding_window_shapes=(3, patch, patch),
                                       strides=(3, stride, stride), baselines=0.0,
                                       target=target, perturbations_per_eval=batch_size)

    captum()
    attribution, seconds = _timed(captum, device)
    record["captum"] = {"seconds": seconds, "maps_per_s": 1.0 / seconds,
                        "perturbations_per_eval": batch_size}
    if reference is not None:  # same convention: p(image) - p(occluded), mean over windows
        ours = reference.drop_map.to(attribution.device)
        theirs = attribution[0, 0].double()
        covered = torch.isfinite(ours)
        record["captum"]["max_abs_difference_vs_ours"] = float(
            (ours[covered] - theirs[covered]).abs().max())
    done = {m: r["maps_per_s"] for m, r in record["methods"].items() if "maps_per_s" in r}
    print(f"occlusion {name}: " + ", ".join(f"{m} {v:.2f}" for m, v in done.items())
          + f", captum {record['captum']['maps_per_s']:.2f} maps/s", flush=True)
    return record


def nccl_check(device: torch.device, quick: bool) -> dict:
    """Run the distributed-mining worker under torchrun; NCCL on CUDA, Gloo on the CPU.

    One rank per GPU (NCCL refuses two ranks on one device); with a single GPU the group has
    one rank, so the merge is trivial but the NCCL session and the CUDA path still run.
    """
    processes = max(1, torch.cuda.device_count()) if device.type == "cuda" else 2
    backend = "nccl" if device.type == "cuda" else "gloo"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rank0.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={processes}", str(Path(__file__).resolve()),
                   "--distributed-worker", "--device", device.type, "--backend", backend,
                   "--worker-out", str(out)] + (["--quick"] if quick else [])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT), os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        seconds = time.perf_counter() - start
        if done.returncode != 0 or not out.exists():
            return {"backend": backend, "processes": processes, "ok": False,
                    "returncode": done.returncode, "stderr_tail": done.stderr[-2000:]}
        record = json.loads(out.read_text())
    record.update({"backend": backend, "processes": processes, "wall_seconds": seconds,
                   "collectives_across_ranks": processes > 1,
                   "command": "torchrun --standalone --nproc-per-node=N "
                              "experiments/bench_gpu.py --distributed-worker ..."})
    print(f"torchrun {backend} x{processes}: identical to one process: {record['ok']}",
          flush=True)
    return record


def _distributed_worker(args) -> None:
    """One torchrun rank: mine its shard, merge on rank 0, compare with one process there."""
    n, size = (16, 64) if args.quick else (256, 224)
    images = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    own_group = int(os.environ.get("WORLD_SIZE", "1")) == 1
    if own_group:  # one GPU: a one-rank group, so that the session still runs on the backend
        torch.distributed.init_process_group(args.backend, init_method="env://")
    try:
        _mine_and_compare(args, images, n, size)
    finally:
        if own_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _mine_and_compare(args, images: torch.Tensor, n: int, size: int) -> None:
    import deconv
    from deconv.distributed import distributed_session
    from deconv.mining import mine_top_k
    from deconv.mining.distributed import mine_top_k_distributed

    with distributed_session(device=args.device, backend=args.backend) as context:
        loaded = deconv.load_model("hed-vgg16", device=context.device)
        layers = sorted(loaded.layers)
        start = time.perf_counter()
        merged = mine_top_k_distributed(loaded, images, layers, k=9, batch_size=8,
                                        device=args.device, progress=False)
        seconds = time.perf_counter() - start
        if context.rank == 0:
            alone = mine_top_k(loaded, images, layers, k=9, batch_size=8,
                               device=context.device, progress=False)
            same = all(torch.equal(merged.image_ids[k], alone.image_ids[k])
                       and torch.allclose(merged.values[k], alone.values[k], rtol=1e-5,
                                          atol=1e-6)
                       for k in alone.values)
            record = {"ok": bool(same), "world_size": context.world_size,
                      "device": str(context.device), "images": n, "size": size,
                      "images_per_s": n / seconds,
                      "rank0_backend": torch.distributed.get_backend()
                      if torch.distributed.is_initialized() else None}
            Path(args.worker_out).write_text(json.dumps(record))


def main(argv: list[str] | None = None) -> dict | None:
    """Run the GPU benchmark; returns its JSON record (None without a CUDA device)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes: a smoke run of every piece (works on the CPU)")
    parser.add_argument("--out", default=str(ROOT / "results"))
    parser.add_argument("--images", type=int, default=512, help="mining images")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--chunk-size", type=int, default=64, help="projection units per pass")
    parser.add_argument("--occlusion-models", nargs="+", default=list(OCCLUSION_MODELS))
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["mining", "projections", "occlusion", "distributed"])
    parser.add_argument("--distributed-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.distributed_worker:
        _distributed_worker(args)
        return None
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device is available here (torch.cuda.is_available() is "
              "False), so nothing was measured and results/bench_gpu.json was not written. "
              "Run `python experiments/bench_gpu.py` on a machine with a GPU, or "
              "`--device cpu --quick` for a smoke run.")
        return None
    if device.type not in ("cuda", "cpu"):
        raise SystemExit(f"--device must be cuda, cuda:N or cpu, got {args.device!r}")
    if args.quick:
        args.images, args.size, args.batch_size = 16, 64, 8
        args.occlusion_models = args.occlusion_models[:1]
    torch.manual_seed(0)
    record = {"benchmark": "mining, projections and occlusion on one device",
              "device": str(device), "quick": args.quick, "torch": torch.__version__,
              "cuda": torch.version.cuda, "platform": platform.platform(),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "timing": "wall clock, device synchronized before each reading"}
    if "mining" not in args.skip:
        record["mining"] = bench_mining(device, args.images, args.size, args.batch_size)
    if "projections" not in args.skip:
        record["projections"] = bench_projections(device, args)
    if "occlusion" not in args.skip:
        size, patch, stride = (64, 16, 16) if args.quick else (224, 32, 8)
        record["occlusion"] = bench_occlusion(device, args.occlusion_models, size, patch,
                                              stride, args.batch_size)
    if "distributed" not in args.skip:
        record["distributed_mining"] = nccl_check(device, args.quick)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_gpu.json").write_text(json.dumps(record, indent=2))
    print(f"wrote {out / 'bench_gpu.json'}")
    return record


if __name__ == "__main__":
    main()
