"""``deconv occlude``: occlusion sensitivity of one image (Zeiler & Fergus 2014, Fig. 7).

Writes ``occlusion.png`` (the five panels) and ``occlusion.json`` (settings, headline numbers
and the maps on the grid of occluder positions) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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
                   help="feature layer (module name or paper number); none: probabilities only")
    p.add_argument("--channel", default="strongest",
                   help="feature map index, or 'strongest' (default)")
    p.add_argument("--feature-model", default=None, choices=list_models(),
                   help="take the feature map from this zoo model instead of --model")
    p.add_argument("--patch", type=int, required=True, help="occluder side in input pixels")
    p.add_argument("--stride", type=int, required=True, help="step between positions")
    p.add_argument("--fill", default="mean",
                   help="mean, image_mean, zero, black, blur, or a number (model-input units)")
    p.add_argument("--target", default=None, help="class index or name (default: top-1)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--method", default="naive", help="occlusion engine")
    p.add_argument("--no-projection", action="store_true",
                   help="skip the deconvnet projection panel")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=run)


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
    import deconv
    from deconv.occlusion import occlusion_sweep
    from deconv.plots.occlusion import (
        OcclusionPanel,
        feature_projection,
        plot_occlusion_panels,
    )
    from deconv.samples import open_image, sample_images

    if args.image.startswith("sample:"):
        name = args.image.split(":", 1)[1]
        picture = sample_images([name])[0].image
    else:
        name = Path(args.image).stem
        picture = open_image(args.image)
    model = deconv.load_model(args.model)
    feature_model = deconv.load_model(args.feature_model) if args.feature_model else model
    layer, channel = None, "strongest"
    if args.layer is not None:
        layer = _number_or_text(args.layer)
        layer = layer if isinstance(layer, (int, str)) else args.layer
        channel = _number_or_text(args.channel)
    fill = _number_or_text(args.fill)
    target = _number_or_text(args.target)
    x = model.preprocess(picture)
    result = occlusion_sweep(model, x, patch=args.patch, stride=args.stride, fill=fill,
                             target=target, layer=layer, channel=channel,
                             feature_model=feature_model if args.feature_model else None,
                             batch_size=args.batch_size, method=args.method)
    projection, note = None, ""
    if layer is not None and not args.no_projection:
        projection, note = feature_projection(feature_model, feature_model.preprocess(picture),
                                              result.feature_layer, result.feature_channel,
                                              result.feature_peak)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fill_rgb = tuple(float(v) for v in model.deprocess(
        _fill_pixel(model, x, args, result)).flatten().tolist())
    panel = OcclusionPanel(name, model.deprocess(x).permute(1, 2, 0).numpy(), fill_rgb, result,
                           projection, note)
    title = (f"{name}: probabilities from {model.name}" +
             (f"; feature map from {result.feature_model_name} `{result.feature_layer}`"
              if layer is not None else "") + f"; fill = {result.fill}")
    plot_occlusion_panels([panel], out / "occlusion.png", title=title)
    record = result.summary()
    for key in ("probability", "label", "feature_total"):
        value = getattr(result, key)
        if value is not None:
            record[key] = value.tolist()
    (out / "occlusion.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(result.summary(), indent=1))
    print(f"wrote {out / 'occlusion.png'} and {out / 'occlusion.json'}")
    return 0


def _fill_pixel(model, x, args, result):
    """The occluder's colour as a model input ``[3, 1, 1]`` (for drawing panel a)."""
    import torch

    from deconv.occlusion.fills import make_fill

    fill = _number_or_text(args.fill)
    if fill == "blur":
        return torch.zeros(3, 1, 1)  # drawn as the mean grey
    image, _ = make_fill(fill, x, patch=result.patch, normalize=model.normalize)
    return image[:, :1, :1]
