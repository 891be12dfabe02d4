"""``deconv occlude``: occlusion sensitivity of one image (Zeiler & Fergus 2014, Fig. 7).

Writes ``occlusion_<image>.png`` (the five panels) and ``occlusion_<image>.json`` (settings,
headline numbers and the maps on the grid of occluder positions) to ``--out``, so several
images can share one ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deconv.cli.arguments import LAYER_HELP, layer_of, nonnegative_int, positive_int
from deconv.occlusion.engines import occlusion_engines
from deconv.validation import check_class_target, check_output_dir
from deconv.zoo import list_models


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``occlude`` subcommand."""
    p = sub.add_parser("occlude", help="occlusion sensitivity maps of one image (Fig. 7)",
                       description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, choices=list_models(),
                   help="zoo model giving the class probabilities")
    p.add_argument("--image", required=True,
                   help="image file, or sample:NAME for an offline sample photo")
    p.add_argument("--layer", default=None,
                   help=f"feature {LAYER_HELP} (default: none, probabilities only)")
    p.add_argument("--channel", default="strongest", type=_channel,
                   help="feature map index (>= 0), or 'strongest' (default)")
    p.add_argument("--feature-model", default=None, choices=list_models(),
                   help="take the feature map from this zoo model instead of --model")
    p.add_argument("--patch", type=positive_int, required=True,
                   help="occluder side in input pixels")
    p.add_argument("--stride", type=positive_int, required=True, help="step between positions")
    p.add_argument("--fill", default="mean",
                   help="mean, image_mean, zero, black, blur, or a number (model-input units)")
    p.add_argument("--target", default=None, help="class index or name (default: top-1)")
    p.add_argument("--batch-size", type=positive_int, default=16)
    engines = ["auto", *occlusion_engines()]
    p.add_argument("--engine", default="naive", choices=engines,
                   help="occlusion engine (all give the same numbers; auto: the fastest that "
                        "supports the model)")
    p.add_argument("--method", default=None, choices=engines,
                   help="deprecated name of --engine")
    p.add_argument("--no-projection", action="store_true",
                   help="skip the deconvnet projection panel")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=run)


def _channel(text: str):
    return text if text == "strongest" else nonnegative_int(text)


def _number_or_text(value: str | None):
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def run(args: argparse.Namespace) -> int:
    """Run the sweep, write the figure and the JSON; returns 0."""
    import warnings

    import deconv
    from deconv.plots.occlusion import occlusion_panel, plot_occlusion_panels
    from deconv.samples import open_image, sample_images

    if args.image.startswith("sample:"):
        name = args.image.split(":", 1)[1]
        picture = sample_images([name])[0].image
    else:
        name = Path(args.image).stem
        picture = open_image(args.image)
    model = deconv.load_model(args.model)
    feature_model = deconv.load_model(args.feature_model) if args.feature_model else model
    out = check_output_dir(args.out, create=False)
    layer, channel = None, "strongest"
    if args.layer is not None:
        layer, channel = layer_of(feature_model, args.layer), args.channel
    fill = _number_or_text(args.fill)
    target = args.target
    if target is not None and model.categories is not None:
        target = check_class_target(target, len(model.categories), model.categories)
    engine = args.engine
    if args.method is not None:
        warnings.warn("--method is deprecated; use --engine", DeprecationWarning, stacklevel=2)
        engine = args.method
    panel = occlusion_panel(model, picture, patch=args.patch, stride=args.stride, fill=fill,
                            target=target, layer=layer, channel=channel,
                            feature_model=feature_model if args.feature_model else None,
                            batch_size=args.batch_size, engine=engine,
                            projection=not args.no_projection, name=name)
    result = panel.result
    check_output_dir(out)
    title = (f"{name}: probabilities from {model.name}" +
             (f"; feature map from {result.feature_model_name} `{result.feature_layer}`"
              if layer is not None else "") + f"; fill = {result.fill}")
    png, record_file = out / f"occlusion_{name}.png", out / f"occlusion_{name}.json"
    plot_occlusion_panels([panel], png, title=title)
    record_file.write_text(json.dumps(result.record(), indent=1) + "\n")
    print(json.dumps(result.summary(), indent=1))
    print(f"wrote {png} and {record_file}")
    return 0
