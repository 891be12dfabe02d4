"""``deconv topk``: top-k activations of a layer over an image folder, drawn as in Fig. 2.

Example::

    deconv topk --model hed-vgg16 --data photos/ --layer 3 --out results/my_topk
    deconv topk --model hed-vgg16 --data samples --layer 5 --channels 7 42 --out out/
    deconv topk --model zfnet --data photos/ --layer 1 2 --count 4 --out out/

Under torchrun every rank mines a contiguous block of the images and rank 0 merges the blocks
exactly and draws (``--distributed``, automatic when ``WORLD_SIZE`` > 1)::

    torchrun --nproc-per-node=2 -m deconv.cli topk --model hed-vgg16 --data photos/ \
        --layer 3 --out out/ --checkpoint out/state.pt

``--data samples`` uses crops of the offline sample photos (:class:`deconv.mining.SampleCrops`).
Writes one PNG per layer (a row per channel: the k deconvnet projections cropped to the
receptive field beside the k image patches), ``topk.pt`` (the mined result; reload with
``deconv.TopKResult.load``) and ``topk.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deconv.cli.arguments import LAYER_HELP, layer_of, nonnegative_int, positive_int
from deconv.errors import MissingFileError
from deconv.validation import check_checkpoint_file, check_output_dir
from deconv.zoo import list_models


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``topk`` subcommand."""
    p = sub.add_parser("topk", help="top-k activating image patches per channel (Fig. 2)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, choices=list_models(), help="zoo model")
    p.add_argument("--data", required=True,
                   help="image folder (searched recursively; bad files are skipped), or "
                        "'samples' for crops of the offline sample photos")
    p.add_argument("--layer", required=True, nargs="+", help=f"one or more; each is a {LAYER_HELP}")
    p.add_argument("--out", required=True,
                   help="output folder (not inside --data: its figures would be mined next time)")
    p.add_argument("--k", type=positive_int, default=9, help="activations per channel (default 9)")
    p.add_argument("--count", type=positive_int, default=6,
                   help="random (seeded) channels per layer, among those alive on k images")
    p.add_argument("--channels", type=nonnegative_int, nargs="+", default=None,
                   help="show these channel indices instead of random ones")
    p.add_argument("--size", type=positive_int, default=None,
                   help="input side (default: the model's input size; 128 for 'samples')")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--workers", type=nonnegative_int, default=0, help="image decoding workers")
    p.add_argument("--seed", type=int, default=0, help="seed of the random channel choice")
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda (under torchrun: cuda:LOCAL_RANK) or cuda:N")
    p.add_argument("--checkpoint", default=None,
                   help="file for a resumable mining state (rerun to continue); distributed "
                        "ranks save theirs beside it as <name>.rank<r>-of-<w>.pt")
    p.add_argument("--checkpoint-every", type=positive_int, default=50, metavar="N",
                   help="save the --checkpoint state every N batches (default 50); it is also "
                        "saved on Ctrl-C or a crash")
    p.add_argument("--distributed", action="store_true",
                   help="shard the images over the torch.distributed ranks (Gloo on cpu, NCCL "
                        "on cuda) and merge exactly on rank 0; automatic when WORLD_SIZE > 1")
    p.add_argument("--pin-memory", action="store_true",
                   help="page-locked batches for faster copies to the GPU")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Mine the folder and draw the grids."""
    from deconv.distributed import env_world_size

    if args.distributed or args.pin_memory or env_world_size() > 1:
        return _run_sharded(args)
    import deconv
    from deconv.plots.topk_grids import mine_and_draw

    loaded = deconv.load_model(args.model, device=args.device)
    dataset, layers, channels = _inputs(args, loaded)
    record = mine_and_draw(loaded, dataset, layers, args.out, k=args.k, channels=channels,
                           seed=args.seed, batch_size=args.batch_size,
                           num_workers=args.workers, checkpoint=args.checkpoint,
                           checkpoint_every=args.checkpoint_every)
    _print(record)
    return 0


def _inputs(args: argparse.Namespace, loaded) -> tuple:
    """The dataset, the layers and the channel choice the arguments ask for."""
    from deconv.mining import SampleCrops
    from deconv.samples import ImageFiles

    layers = [layer_of(loaded, x) for x in args.layer]
    if args.data == "samples":
        check_output_dir(args.out, create=False)
        dataset = SampleCrops(loaded.preprocess, size=args.size or 128)
    else:
        check_output_dir(args.out, inputs=[args.data], create=False)
        size = args.size or loaded.input_size
        dataset = ImageFiles(args.data, transform=lambda im: loaded.preprocess(im, size=size))
        if len(dataset) == 0:
            raise MissingFileError(f"no image files found under {args.data}")
    if args.checkpoint is not None and Path(args.checkpoint).exists():
        check_checkpoint_file(args.checkpoint, "--checkpoint")
    channels = args.channels if args.channels else args.count
    return dataset, layers, channels


def _run_sharded(args: argparse.Namespace) -> int:
    """Mine on every rank (one process without torchrun), merge on rank 0, draw there."""
    import json
    import tempfile

    import deconv
    from deconv.distributed import distributed_session
    from deconv.mining.distributed import mine_top_k_distributed
    from deconv.plots.topk_grids import mine_and_draw

    with tempfile.TemporaryDirectory() as scratch:
        state = Path(args.checkpoint) if args.checkpoint else Path(scratch) / "state.pt"
        with distributed_session(device=args.device) as context:
            loaded = deconv.load_model(args.model, device=str(context.device))
            dataset, layers, channels = _inputs(args, loaded)
            merged = mine_top_k_distributed(
                loaded, dataset, layers, k=args.k, batch_size=args.batch_size,
                num_workers=args.workers, pin_memory=args.pin_memory, checkpoint=state,
                checkpoint_every=args.checkpoint_every)
        if merged is None:  # not rank 0: rank 0 draws and writes
            return 0
        # The merged state is marked as the finished whole run: mine_and_draw reuses it.
        record = mine_and_draw(loaded, dataset, layers, args.out, k=args.k, channels=channels,
                               seed=args.seed, batch_size=args.batch_size, checkpoint=state)
    record.pop("reused_checkpoint", None)  # the merged state is always reused here
    record["distributed"] = merged.meta["distributed"]
    record["mining_seconds"] = merged.meta["seconds"]
    record["mining_images_per_second"] = merged.meta["images_per_second"]
    (Path(args.out) / "topk.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"{merged.meta['distributed']['world_size']} rank(s):", end=" ")
    _print(record)
    return 0


def _print(record: dict) -> None:
    print(f"mined {record['images']} images ({len(record['skipped_ids'])} skipped) in "
          f"{record['mining_seconds']} s")
    for name, entry in record["layers"].items():
        print(f"  {name}: channels {entry['channels']} -> {entry['figure']}")
