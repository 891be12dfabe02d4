"""``deconv project``: project the strongest unit(s) of a layer of one image to pixel space.

Example: ``deconv project --model hed-vgg16 --image coffee --layer 5 --top 3 --out results/``
writes ``project_hed-vgg16_layer5.png`` (per unit: the image with the unit's receptive field,
the projection, and both cropped to the field) and a JSON with the units and their values.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from deconv.deconvnet import (
    Deconvnet,
    GenericDeconvnet,
    UnsupportedModuleError,
    crop_to_receptive_field,
    normalize_for_display,
    to_display_image,
)
from deconv.samples import _SAMPLES, open_image, sample_images
from deconv.zoo import list_models, load_model

__all__ = ["register", "run", "choose_engine", "load_image", "project_strongest",
           "draw_projections"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``project`` subcommand."""
    p = sub.add_parser("project", help="project the strongest unit(s) of a layer to pixels "
                                       "(Zeiler & Fergus deconvnet)")
    p.add_argument("--model", required=True, choices=list_models(), help="zoo model")
    p.add_argument("--weights", default="default",
                   help="'default', 'none' (random init) or a checkpoint path")
    p.add_argument("--image", required=True,
                   help=f"an image file, or a sample photo name ({', '.join(_SAMPLES)})")
    p.add_argument("--layer", required=True,
                   help="module name (e.g. features.29) or paper layer number (e.g. 5)")
    p.add_argument("--channel", type=int, default=None,
                   help="only units of this feature map (default: any map)")
    p.add_argument("--top", type=int, default=1, help="how many of the strongest units")
    p.add_argument("--size", type=int, default=None, help="input side (default: the model's)")
    p.add_argument("--engine", choices=("auto", "explicit", "generic"), default="auto",
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
    raise FileNotFoundError(f"--image {spec!r} is neither a file nor a sample photo name "
                            f"({', '.join(_SAMPLES)})")


def choose_engine(loaded, layer, engine: str = "auto"):
    """The explicit :class:`Deconvnet` when the path to ``layer`` allows it, else the generic one.

    Args:
        loaded (LoadedModel | nn.Module): the model.
        layer (str | int): the layer.
        engine (str): ``"auto"``, ``"explicit"`` or ``"generic"``.
    """
    if engine == "generic":
        return GenericDeconvnet(loaded, rule="deconvnet")
    explicit = Deconvnet(loaded)
    try:
        explicit.path(layer)
    except UnsupportedModuleError:
        if engine == "explicit":
            raise
        return GenericDeconvnet(loaded, rule="deconvnet")
    return explicit


def project_strongest(loaded, image: torch.Tensor, layer, top: int = 1,
                      channel: int | None = None, seed: str = "activation",
                      engine: str = "auto") -> dict:
    """Find the ``top`` strongest units of ``layer`` on one image and project them.

    Args:
        loaded (LoadedModel): the model.
        image (torch.Tensor): one preprocessed image [3, H, W].
        layer (str | int): module name or paper layer number.
        top (int): how many units.
        channel (int | None): restrict to one feature map.
        seed (str): ``"activation"`` or ``"unit"``.
        engine (str): see :func:`choose_engine`.

    Returns:
        dict: ``layer`` (module name), ``engine`` (class name), ``units`` [k, 4], ``values``
        [k], ``projections`` [k, 3, H, W].
    """
    projector = choose_engine(loaded, layer, engine)
    batch = image[None].to(loaded.device)
    found = projector.top_units(batch, layer, top, channel=channel)
    projections = projector.project(batch, layer, found.units, seed=seed)
    return {"layer": projector.resolve(layer), "engine": type(projector).__name__,
            "units": found.units, "values": found.values, "projections": projections}


def draw_projections(loaded, image: torch.Tensor, result: dict, path: Path,
                     title: str = "") -> Path:
    """One row per unit: image with the receptive field, projection, and both cropped to it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from deconv.receptive_field import receptive_field

    size = tuple(image.shape[-2:])
    units = result["units"]
    spatial = units.shape[1] == 4
    try:
        field = receptive_field(loaded, result["layer"], size) if spatial else None
    except ValueError:
        field = None
    pixels = loaded.deprocess(image.detach().cpu())
    shown = normalize_for_display(result["projections"].cpu(), scale="image", percentile=99.5)
    columns = 4 if field is not None else 2
    fig, axes = plt.subplots(len(units), columns, figsize=(2.2 * columns, 2.3 * len(units)),
                             dpi=100, squeeze=False)
    for row, (unit, value) in enumerate(zip(units.tolist(), result["values"].tolist())):
        label = f"map {unit[1]}" + (f" at ({unit[2]}, {unit[3]})" if spatial else "")
        panels = [(pixels, f"{label}\nactivation {value:.3g}"), (shown[row], "projection")]
        if field is not None:
            y, x = unit[2], unit[3]
            panels += [(crop_to_receptive_field(pixels, field, y, x), "image patch (RF)"),
                       (crop_to_receptive_field(shown[row], field, y, x), "projection (RF)")]
        for ax, (picture, caption) in zip(axes[row], panels):
            ax.imshow(to_display_image(picture), cmap="gray")
            ax.set_title(caption, fontsize=7)
            ax.axis("off")
        if field is not None:
            top, left, bottom, right = field.box(unit[2], unit[3])
            axes[row][0].add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top,
                                             fill=False, edgecolor="yellow", linewidth=1.2))
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def run(args: argparse.Namespace) -> int:
    """Load the model and image, project the strongest unit(s), write the PNG and JSON."""
    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    weights = None if args.weights == "none" else args.weights
    loaded = load_model(args.model, weights=weights)
    layer = int(args.layer) if args.layer.isdigit() and args.layer in map(
        str, loaded.layers) else args.layer
    image = loaded.preprocess(load_image(args.image), args.size)
    result = project_strongest(loaded, image, layer, args.top, args.channel, args.seed,
                               args.engine)
    out = Path(args.out)
    stem = f"project_{args.model}_layer{str(args.layer).replace('.', '_')}"
    png = draw_projections(loaded, image, result, out / f"{stem}.png",
                           title=f"{loaded.name}: layer {args.layer} ({result['layer']}), "
                                 f"{result['engine']}, seed={args.seed}")
    record = {"model": loaded.name, "source": loaded.source, "image": args.image,
              "layer": args.layer, "module": result["layer"], "engine": result["engine"],
              "seed": args.seed, "units": result["units"].tolist(),
              "values": result["values"].tolist(), "figure": png.name}
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2))
    print(f"wrote {png} and {out / (stem + '.json')}")
    for unit, value in zip(record["units"], record["values"]):
        print(f"  unit {unit}: activation {value:.4g}")
    return 0
