"""``deconv atlas``: a browsable, offline website of every feature map of chosen layers.

Example::

    deconv atlas --model zfnet-fashion --data fashion-mnist:test --layers 1 2 3 4 5 --out atlas/
    deconv atlas --model hed-vgg16 --data samples --layers 1 2 3 --optima 16 --out vgg-atlas/
    deconv atlas --model zfnet-fashion --data fashion-mnist:test --layers 1 --quick --out tiny/

Per channel: the top-k patches cropped to the receptive field with their deconvnet and
guided-backprop projections, the positive and negative optima, the activation histogram, the
dead fraction, the labels of the top-k (labelled data) and links to the channels of the
neighbouring layers with the strongest weights; a sortable page per layer; an index with the
model card; ``atlas.json`` with every number and file. Open ``OUT/index.html`` from disk.
Rerunning continues an interrupted build, adds new layers, and with ``--optima N`` fills in
N more optima per layer; another model, weights or data in ``OUT`` is refused (``--rebuild``).
"""

from __future__ import annotations

import argparse

from deconv.cli.arguments import LAYER_HELP, nonnegative_int, positive_int
from deconv.zoo import list_models


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``atlas`` subcommand."""
    p = sub.add_parser("atlas", help="browsable offline atlas of every feature map",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, choices=list_models(), help="zoo model")
    p.add_argument("--weights", default="default",
                   help="checkpoint path for the model (default: its own weights)")
    p.add_argument("--data", required=True,
                   help="a folder of images, 'samples' (crops of the offline sample photos), "
                        "'fashion-mnist:test' or 'fashion-mnist:train'")
    p.add_argument("--layers", required=True, nargs="+",
                   help=f"one or more; each a {LAYER_HELP}")
    p.add_argument("--out", required=True, help="the atlas folder")
    p.add_argument("--k", type=positive_int, default=9, help="top images per channel (default 9)")
    p.add_argument("--quick", action="store_true",
                   help="smoke build: the first 300 images, 16 optimisation steps, every page")
    p.add_argument("--limit", type=positive_int, default=None, help="mine only the first N images")
    p.add_argument("--optima", type=nonnegative_int, default=None,
                   help="optimise at most N more channels per layer in this run (default: "
                        "all; 0: none); rerun to fill in the rest")
    p.add_argument("--optima-steps", type=positive_int, default=None,
                   help="Adam steps per optimum (default 128; --quick 16)")
    p.add_argument("--batch-size", type=positive_int, default=64,
                   help="images per forward when mining")
    p.add_argument("--no-guided", action="store_true",
                   help="skip the guided-backprop projections (the slowest stage on big models)")
    p.add_argument("--rebuild", action="store_true",
                   help="delete an atlas of another model/weights/data in --out and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the atlas and print where it is."""
    import deconv
    from deconv.atlas import build_atlas

    loaded = deconv.load_model(args.model, device=args.device, weights=args.weights)
    build = build_atlas(loaded, args.data, args.layers, args.out, k=args.k, quick=args.quick,
                        limit=args.limit, optima=args.optima, optima_steps=args.optima_steps,
                        batch_size=args.batch_size, guided=not args.no_guided,
                        rebuild=args.rebuild,
                        progress=not args.no_progress)
    manifest = build.manifest
    channels = sum(layer["channels"] for layer in manifest["layers"])
    optima = sum(layer["optima_done"] for layer in manifest["layers"])
    print(f"atlas of {channels} channels in {len(manifest['layers'])} layer(s), {optima} with "
          f"optima, {manifest['site_bytes'] / 1e6:.1f} MB"
          + (" (continued an earlier build)" if build.reused else ""))
    print("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in build.timings.items()))
    print(f"open {build.index.resolve().as_uri()}")
    return 0
