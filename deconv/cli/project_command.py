"""``deconv project``: project the strongest unit(s) of a layer of one image to pixel space.

Example: ``deconv project --model hed-vgg16 --image coffee --layer 5 --top 3 --out results/``
writes ``project_hed-vgg16_coffee_layer5.png`` (per unit: the image with the unit's receptive field,
the projection, and both cropped to the field) and a JSON with the units and their values.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deconv.cli.arguments import LAYER_HELP, layer_of, nonnegative_int, positive_int
from deconv.deconvnet.choose import ENGINE_CHOICES
from deconv.errors import MissingFileError
from deconv.plots.projections import save_strongest_projections
from deconv.samples import _SAMPLES, open_image, sample_images
from deconv.validation import check_output_dir
from deconv.zoo import list_models, load_model

__all__ = ["register", "run", "load_image"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``project`` subcommand."""
    p = sub.add_parser("project", help="project the strongest unit(s) of a layer to pixels "
                                       "(Zeiler & Fergus deconvnet)")
    p.add_argument("--model", required=True, choices=list_models(), help="zoo model")
    p.add_argument("--weights", default="default",
                   help="'default', 'none' (random init) or a checkpoint path")
    p.add_argument("--image", required=True,
                   help=f"an image file, or a sample photo name ({', '.join(_SAMPLES)})")
    p.add_argument("--layer", required=True, help=LAYER_HELP)
    p.add_argument("--channel", type=nonnegative_int, default=None,
                   help="only units of this feature map (default: any map)")
    p.add_argument("--top", type=positive_int, default=1, help="how many of the strongest units")
    p.add_argument("--size", type=positive_int, default=None,
                   help="input side (default: the model's)")
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="auto",
                   help="explicit deconvnet (chains of conv/ReLU/pool) or the autograd engine; "
                        "auto picks the explicit one when the model allows it")
    p.add_argument("--seed", choices=("activation", "unit"), default="activation",
                   help="seed each unit with its activation (the paper) or with 1")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=run)


def load_image(spec: str):
    """An image file, or a sample photo by name (PIL, RGB).

    Raises:
        FileNotFoundError: neither a file nor a sample name.
    """
    path = Path(spec)
    if path.is_file():
        return open_image(path)
    if spec in _SAMPLES:
        return sample_images([spec])[0].image
    raise MissingFileError(f"--image {spec!r} is neither a file nor a sample photo name "
                            f"({', '.join(_SAMPLES)})")


def run(args: argparse.Namespace) -> int:
    """Load the model and image, project the strongest unit(s), write the PNG and JSON."""
    check_output_dir(args.out, create=False)
    weights = None if args.weights == "none" else args.weights
    loaded = load_model(args.model, weights=weights)
    layer_of(loaded, args.layer)  # a bad --layer fails before any work
    image = loaded.preprocess(load_image(args.image), args.size)
    check_output_dir(args.out)
    record = save_strongest_projections(loaded, image, args.layer, args.out, top=args.top,
                                        channel=args.channel, seed=args.seed,
                                        engine=args.engine, image_name=args.image)
    png = record["png"]
    print(f"wrote {png} and {record['json']}")
    for unit, value in zip(record["units"], record["values"]):
        print(f"  unit {unit}: activation {value:.4g}")
    return 0
