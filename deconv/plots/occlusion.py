"""The paper's Fig. 7 panels for one or more occlusion sweeps.

Per image, five panels: (a) the image with the occluder at the position that hurts the target
class most, (b) the total activation of the chosen feature map per occluder position, (c) that
feature map projected to pixels by a deconvnet, (d) the probability of the target class per
position, (e) the most probable label per position, with a legend of label names. Maps (b),
(d), (e) are drawn at the occluder centres, on the image's pixel axes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from deconv.plots.scaling import DISPLAY_PERCENTILE, normalize_for_display, to_display_image

if TYPE_CHECKING:
    from deconv.occlusion.sweep import OcclusionResult

__all__ = ["OcclusionPanel", "feature_projection", "fill_picture", "occluded_picture",
           "occlusion_panel", "plot_occlusion_panels"]


@dataclass
class OcclusionPanel:
    """What one row of the figure shows.

    Attributes:
        name (str): image name.
        picture (np.ndarray): the model input as displayable ``H x W x 3`` floats in [0, 1].
        fill_rgb (tuple[float, float, float] | None): one colour for the occluder in panel (a)
            (used when ``fill_picture`` is None).
        result (OcclusionResult): the sweep.
        projection (np.ndarray | None): ``H x W x 3`` in [0, 1], the deconvnet projection of the
            feature map (panel c), or None.
        projection_note (str): how it was made (caption).
        fill_picture (np.ndarray | None): the fill the sweep used, as displayable ``H x W x 3``
            pixels; panel (a) shows its pixels inside the occluder (so a blur looks blurred).
    """

    name: str
    picture: np.ndarray
    fill_rgb: tuple[float, float, float] | None
    result: OcclusionResult
    projection: np.ndarray | None = None
    projection_note: str = ""
    fill_picture: np.ndarray | None = None


def feature_projection(feature_model, image: torch.Tensor, layer: str, channel: int,
                       peak: tuple[int, int] | None = None) -> tuple[np.ndarray, str]:
    """Project one feature map of one image to pixels for display (panel c).

    The engine is :func:`deconv.deconvnet.deconvnet_for`'s choice (the explicit deconvnet on a
    supported chain, else the generic one); the picture is on the package's display scale
    (:func:`deconv.plots.scaling.normalize_for_display` at the 99.5th percentile).

    Args:
        feature_model (nn.Module | LoadedModel): the model the map comes from.
        image (torch.Tensor): its input ``[C, H, W]``.
        layer (str): module name.
        channel (int): the feature map.
        peak (tuple[int, int] | None): project only this unit ``(y, x)`` of the map (the
            paper projects the map's strongest activation); the whole map when None.

    Returns:
        tuple[np.ndarray, str]: ``H x W x 3`` in [0, 1] (0.5 = zero) and a caption note.
    """
    from deconv.deconvnet import Deconvnet, deconvnet_for

    engine = deconvnet_for(feature_model, layer)
    if peak is None:
        projection = engine.project_feature_map(image[None], layer, channel)
    else:
        units = torch.tensor([[0, channel, peak[0], peak[1]]])
        projection = engine.project(image[None], layer, units)
    kind = "explicit deconvnet" if isinstance(engine, Deconvnet) else "generic deconvnet"
    what = "whole map" if peak is None else f"strongest unit {tuple(peak)}"
    shown = normalize_for_display(projection[0], percentile=DISPLAY_PERCENTILE)
    return to_display_image(shown), f"{what}, {kind}"


def occlusion_panel(model, picture, *, patch: int, stride: int,
                    fill: str | float | torch.Tensor = "mean", target: int | str | None = None,
                    layer: str | int | None = None, channel: int | str = "strongest",
                    feature_model=None, batch_size: int = 32, engine: str = "auto",
                    projection: bool = True, name: str = "", progress: bool = True
                    ) -> OcclusionPanel:
    """An occlusion figure row for a model and a picture: the sweep, the projection, the fill.

    What ``deconv occlude`` and ``experiments/fig7_occlusion.py`` both call (then
    :func:`plot_occlusion_panels`). The occluder of panel (a) is drawn with the fill the sweep
    used (:func:`deconv.occlusion.make_fill`, shown through ``model.deprocess``): grey for
    ``"mean"``, black for ``"black"``, the blurred image for ``"blur"``, ...

    Args:
        model (LoadedModel): gives the probabilities (needs ``preprocess``, ``deprocess``,
            ``normalize``; any :class:`~deconv.occlusion.WrappedModel` that has them).
        picture (PIL.Image.Image | np.ndarray): the photo.
        patch (int): occluder side in input pixels.
        stride (int): step between positions.
        fill (str | float | torch.Tensor): see :func:`deconv.occlusion.occlusion_sweep`.
        target (int | str | None): class index or name (default: the top-1 class).
        layer (str | int | None): feature layer (module name or paper number); None: the
            probabilities only.
        channel (int | str): feature map, or ``"strongest"``.
        feature_model (LoadedModel | None): take the feature map from this model instead.
        batch_size (int): positions per forward.
        engine (str): occlusion engine or ``"auto"``.
        projection (bool): also project the feature map's strongest unit (panel c).
        name (str): the image's name (captions).
        progress (bool): progress bar.

    Returns:
        OcclusionPanel: everything one row of the figure shows.
    """
    from deconv.occlusion import occlusion_sweep

    f_model = feature_model if feature_model is not None else model
    x = model.preprocess(picture)
    result = occlusion_sweep(model, x, patch=patch, stride=stride, fill=fill, target=target,
                             layer=layer, channel=channel, feature_model=feature_model,
                             batch_size=batch_size, engine=engine, progress=progress)
    shown, note = None, ""
    if layer is not None and projection:
        shown, note = feature_projection(f_model, f_model.preprocess(picture), result.feature_layer,
                                         result.feature_channel, result.feature_peak)
    return OcclusionPanel(name, to_display_image(model.deprocess(x).clamp(0, 1)), None, result,
                          shown, note, fill_picture=fill_picture(model, x, fill, result.grid.patch))


def fill_picture(model, x: torch.Tensor, fill, patch: tuple[int, int]) -> np.ndarray:
    """What the occluder looks like: the sweep's fill image as displayable ``H x W x 3`` pixels.

    Args:
        model (LoadedModel): the model whose input ``x`` is (``normalize``, ``deprocess``).
        x (torch.Tensor): the model input ``[3, H, W]``.
        fill (str | float | torch.Tensor): the sweep's ``fill``.
        patch (tuple[int, int]): the occluder size (for ``"blur"``).

    Returns:
        np.ndarray: ``H x W x 3`` in [0, 1] (:func:`deconv.occlusion.make_fill` shown through
        ``model.deprocess``: grey for ``"mean"``, black for ``"black"``, ...).
    """
    from deconv.occlusion import make_fill

    image, _ = make_fill(fill, x, patch=patch, normalize=getattr(model, "normalize", None))
    return to_display_image(model.deprocess(image).clamp(0, 1))


def occluded_picture(panel: OcclusionPanel) -> np.ndarray:
    """Panel (a): the picture with the occluder at the position that hurts the target most.

    The most harmful position is the lowest probability of the target (the lowest feature
    total without a classifier); inside it the fill's pixels (``fill_picture``) or ``fill_rgb``.
    """
    r = panel.result
    shown = panel.picture.copy()
    worst = r.probability if r.probability is not None else r.feature_total
    y0, y1, x0, x1 = r.boxes[int(worst.argmin())].tolist()
    if panel.fill_picture is not None:
        shown[y0:y1, x0:x1] = panel.fill_picture[y0:y1, x0:x1]
    else:
        shown[y0:y1, x0:x1] = panel.fill_rgb
    return shown


def _extent(result: OcclusionResult) -> tuple[float, float, float, float]:
    """imshow extent so grid cell (i, j) is centred on its (unclipped) occluder centre."""
    (ph, pw), (sh, sw) = result.patch, result.stride
    rows, cols = result.grid_shape
    left, top = pw / 2 - sw / 2 - 0.5, ph / 2 - sh / 2 - 0.5
    return (left, left + cols * sw, top + rows * sh, top)


def plot_occlusion_panels(panels: Sequence[OcclusionPanel], path: str | Path,
                          title: str = "", max_labels: int = 6, dpi: int = 90) -> None:
    """Draw the five Fig. 7 panels per image and save a PNG.

    Args:
        panels (Sequence[OcclusionPanel]): one row each.
        path (str | Path): output file.
        title (str): figure title (say which models gave the maps).
        max_labels (int): labels named in panel (e)'s legend; rarer ones are "other".
        dpi (int): resolution.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    height = 3.3 * len(panels) + (0.6 if title else 0)
    fig, axes = plt.subplots(len(panels), 5, figsize=(17, height), dpi=dpi, squeeze=False)
    for row, panel in zip(axes, panels):
        r = panel.result
        height, width = r.image_size
        extent = _extent(r)
        for ax in row:
            ax.set_xlim(-0.5, width - 0.5)
            ax.set_ylim(height - 0.5, -0.5)
            ax.set_xticks([])
            ax.set_yticks([])
        # (a) the image with the most harmful occluder
        worst = r.probability if r.probability is not None else r.feature_total
        y0, y1, x0, x1 = r.boxes[int(worst.argmin())].tolist()
        row[0].imshow(occluded_picture(panel))
        row[0].add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                       color="black", lw=1.5))
        row[0].set_title(f"(a) {panel.name}, occluder {r.patch[0]} px / stride {r.stride[0]}",
                         fontsize=8)
        # (b) total activation of the feature map
        if r.feature_total is not None:
            im = row[1].imshow(r.feature_total.numpy(), extent=extent, cmap="viridis")
            fig.colorbar(im, ax=row[1], fraction=0.046, pad=0.02)
            row[1].set_title(f"(b) total activation, {r.feature_model_name} `{r.feature_layer}`"
                             f" map {r.feature_channel}", fontsize=8)
        else:
            row[1].set_title("(b) no feature map requested", fontsize=8)
        # (c) projection of that map
        if panel.projection is not None:
            row[2].imshow(panel.projection)
            row[2].set_title(f"(c) map {r.feature_channel} projected:\n{panel.projection_note}",
                             fontsize=7)
        else:
            row[2].set_title("(c) no projection", fontsize=8)
        # (d) probability of the target class
        if r.probability is not None:
            im = row[3].imshow(r.probability.numpy(), extent=extent, cmap="magma", vmin=0,
                               vmax=max(float(r.probability.max()), 1e-6))
            fig.colorbar(im, ax=row[3], fraction=0.046, pad=0.02)
            row[3].set_title(f"(d) p({r.target_name or r.target}) [{r.model_name}], "
                             f"unoccluded {r.base_probability:.2f}", fontsize=8)
            # (e) most probable label
            counts = Counter(r.label.flatten().tolist())
            named = [label for label, _ in counts.most_common(max_labels)]
            codes = torch.tensor([named.index(v) if v in named else len(named)
                                  for v in r.label.flatten().tolist()]).view(r.grid_shape)
            colours = plt.get_cmap("tab10").colors[:len(named)] + ((0.6, 0.6, 0.6),)
            row[4].imshow(codes.numpy(), extent=extent, interpolation="nearest",
                          cmap=ListedColormap(colours), vmin=-0.5, vmax=len(colours) - 0.5)
            handles = [plt.Rectangle((0, 0), 1, 1, color=colours[i]) for i in range(len(named))]
            names = [r.label_name(v) for v in named]
            if len(counts) > len(named):
                handles.append(plt.Rectangle((0, 0), 1, 1, color=colours[-1]))
                names.append("other")
            row[4].legend(handles, names, fontsize=6, loc="lower left", framealpha=0.8)
            row[4].set_title("(e) most probable label", fontsize=8)
        else:
            row[3].set_title("(d) no classifier", fontsize=8)
            row[4].set_title("(e) no classifier", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.6 / height if title else 1))
    fig.savefig(path)
    plt.close(fig)
