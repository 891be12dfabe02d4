"""Drawing deconvnet projections: cropping to a receptive field and the ``deconv project`` figure.

A projection is a signed image in the model's input space; it is shown with
:func:`deconv.plots.scaling.normalize_for_display` (zero at mid-grey, the 99.5th percentile of
``|x|`` at black / white).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from deconv.errors import InvalidArgumentError
from deconv.plots.scaling import DISPLAY_PERCENTILE, normalize_for_display, to_display_image

__all__ = ["crop_to_receptive_field", "draw_projections", "save_strongest_projections"]


def crop_to_receptive_field(image: torch.Tensor, field, y: int, x: int, pad: bool = False,
                            fill: float = 0.0) -> torch.Tensor:
    """Crop an image (or a projection) to the receptive field of unit ``(y, x)``.

    Args:
        image (torch.Tensor): [..., H, W] in the model's input space.
        field (ReceptiveField): from :func:`deconv.receptive_field.receptive_field` for the
            unit's layer and this input size (anything with ``box(y, x, clip)`` and ``size``).
        y (int): the unit's row in the layer's output.
        x (int): the unit's column.
        pad (bool): False: the part of the field inside the image (smaller at the borders).
            True: the full field, its part outside the image filled with ``fill``, so crops of
            one layer all have the same size and the unit sits at their centre.
        fill (float): value of the padding.

    Returns:
        torch.Tensor: [..., h, w].

    Raises:
        ValueError: the field was computed for another input size.
    """
    height, width = image.shape[-2:]
    expected = tuple(getattr(field, "input_size", (height, width)))
    if expected != (height, width):
        raise InvalidArgumentError(
            f"the receptive field was computed for input size {expected}, but the "
            f"image is {(height, width)}; recompute it with that input_size")
    top, left, bottom, right = field.box(int(y), int(x), clip=True)
    crop = image[..., top:bottom, left:right]
    if not pad:
        return crop
    t0, l0, b0, r0 = field.box(int(y), int(x), clip=False)
    out = image.new_full((*image.shape[:-2], b0 - t0, r0 - l0), fill)
    out[..., top - t0:bottom - t0, left - l0:right - l0] = crop
    return out


def draw_projections(model, image: torch.Tensor, result: dict, path: str | Path,
                     title: str = "") -> Path:
    """One row per unit: image with the receptive field, projection, and both cropped to it.

    Args:
        model (LoadedModel): the model (``deprocess`` turns its input back into pixels).
        image (torch.Tensor): the preprocessed image ``[3, H, W]``.
        result (dict): from :func:`deconv.deconvnet.project_strongest`.
        path (str | Path): the PNG to write (its folder is created).
        title (str): figure title.

    Returns:
        Path: the file written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from deconv.receptive_field import receptive_field

    path = Path(path)
    size = tuple(image.shape[-2:])
    units = result["units"]
    spatial = units.shape[1] == 4
    try:
        field = receptive_field(model, result["layer"], size) if spatial else None
    except ValueError:
        field = None
    pixels = model.deprocess(image.detach().cpu())
    shown = normalize_for_display(result["projections"].cpu(), scale="image",
                                  percentile=DISPLAY_PERCENTILE)
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


def save_strongest_projections(model, image: torch.Tensor, layer: str | int, out: str | Path, *,
                               top: int = 1, channel: int | None = None,
                               seed: str = "activation", engine: str = "auto",
                               image_name: str = "") -> dict:
    """Project the strongest unit(s) of ``layer`` on one image; write the PNG and the JSON.

    What ``deconv project`` and ``experiments/project_example.py`` do: the files are
    ``project_<model>_<image>_layer<layer>.png`` (see :func:`draw_projections`) and ``.json``
    (model, layer, module, engine, seed, units and their activations) in ``out``.

    Args:
        model (LoadedModel): the model.
        image (torch.Tensor): the preprocessed image ``[3, H, W]``.
        layer (str | int): module name or paper layer number (as given: it names the files).
        out (str | Path): output folder (created).
        top (int): how many of the strongest units.
        channel (int | None): only units of this feature map.
        seed (str): ``"activation"`` (the paper) or ``"unit"``.
        engine (str): ``"auto"``, ``"explicit"`` or ``"generic"``
            (:func:`deconv.deconvnet.deconvnet_for`).
        image_name (str): recorded in the JSON; its stem is part of the file names.

    Returns:
        dict: the JSON record, plus ``png`` and ``json`` (the paths written).
    """
    from deconv.deconvnet.strongest import project_strongest

    result = project_strongest(model, image, layer, top, channel, seed, engine)
    out = Path(out)
    name = getattr(model, "name", type(model).__name__)
    # The image's name is part of the file names, so several images can share one ``out``.
    picture = f"_{Path(image_name).stem}" if image_name else ""
    stem = f"project_{name}{picture}_layer{str(layer).replace('.', '_').replace(':', '-')}"
    png = draw_projections(model, image, result, out / f"{stem}.png",
                           title=f"{name}: layer {layer} ({result['layer']}), "
                                 f"{result['engine']}, seed={seed}")
    record = {"model": name, "source": getattr(model, "source", ""), "image": image_name,
              "layer": str(layer), "module": result["layer"], "engine": result["engine"],
              "seed": seed, "units": result["units"].tolist(),
              "values": result["values"].tolist(), "figure": png.name}
    path = out / f"{stem}.json"
    path.write_text(json.dumps(record, indent=2))
    return {**record, "png": png, "json": path}
