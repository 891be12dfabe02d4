"""The comparison grid: rows images, columns methods, every map on one display scale."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from deconv.errors import InvalidArgumentError
from deconv.plots.png import save_figure
from deconv.plots.scaling import DISPLAY_PERCENTILE, scale_for_display

__all__ = ["method_grid", "save_figure", "SHORT_NAMES"]

#: Column titles for the registry's methods (two lines, to keep columns narrow).
SHORT_NAMES = {
    "deconvnet": "deconvnet\n(ours)", "occlusion": "occlusion\n(ours)",
    "guided-backprop": "guided backprop\n(ours)",
    "captum-saliency": "Saliency", "captum-input-x-gradient": "Input x\nGradient",
    "captum-deconvolution": "Deconvolution", "captum-guided-backprop": "Guided\nBackprop",
    "captum-integrated-gradients": "Integrated\nGradients", "captum-occlusion": "Occlusion",
    "captum-layer-gradcam": "Grad-CAM", "captum-guided-gradcam": "Guided\nGrad-CAM"}


def method_grid(pictures: torch.Tensor, maps: Mapping[str, torch.Tensor],
                row_labels: Sequence[str], title: str = "",
                percentile: float = DISPLAY_PERCENTILE):
    """Draw the photos in the first column and each method's maps in the next ones.

    Every map is scaled by its ``percentile`` of ``|value|`` and clipped to [-1, 1]
    (:func:`deconv.plots.scale_for_display`) and shown with one diverging colormap
    centred on 0 (red positive, blue negative), so columns are comparable.

    Args:
        pictures (torch.Tensor): the photos as pixels in [0, 1], ``[N, 3, H, W]``
            (``LoadedModel.deprocess`` of the model input).
        maps (Mapping[str, torch.Tensor]): method name -> maps ``[N, H, W]``, in column order.
        row_labels (Sequence[str]): one label per row (image and explained class).
        title (str): figure title.
        percentile (float): display scale (see :func:`scale_for_display`).

    Returns:
        matplotlib.figure.Figure: the figure (save it with ``fig.savefig(path, dpi=100)``).

    Raises:
        ValueError: a map set with the wrong number of images.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, cols = pictures.shape[0], len(maps) + 1
    for name, m in maps.items():
        if m.shape[0] != n:
            raise InvalidArgumentError(f"{name}: {m.shape[0]} maps for {n} pictures")
    fig, axes = plt.subplots(n, cols, figsize=(1.25 * cols, 1.35 * n + 0.4), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(pictures[i].permute(1, 2, 0).clamp(0, 1).cpu().numpy())
        axes[i, 0].set_ylabel(row_labels[i], fontsize=7)
        for j, (name, m) in enumerate(maps.items(), start=1):
            shown = scale_for_display(m[i].detach().float().cpu(), percentile)
            axes[i, j].imshow(shown.numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
            if i == 0:
                axes[i, j].set_title(SHORT_NAMES.get(name, name), fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_title("photo (target)", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout(pad=0.3)
    return fig

