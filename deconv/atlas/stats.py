"""Per-channel numbers of an atlas: activation histogram, dead fraction, class selectivity.

One streaming pass records, per image and channel, the spatial maximum of the feature map and
whether the map is nonzero anywhere (the same definition of "dead" as
:func:`deconv.dead_feature_maps`, with ``atol = 0``). Everything a page shows is derived from
those two ``[N, C]`` tables and the top-k labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from deconv.layers import module_of
from deconv.mining.sources import iter_batches
from deconv.mining.taps import LayerTaps

__all__ = ["per_image_maxima", "label_entropy", "channel_summary", "HISTOGRAM_BINS"]

HISTOGRAM_BINS = 24


@torch.no_grad()
def per_image_maxima(model, dataset, layers: Sequence[str], batch_size: int = 64,
                     progress: bool = True) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per layer: ``[N, C]`` spatial maximum of each map and ``[N, C]`` bool "nonzero anywhere".

    Args:
        model (nn.Module | LoadedModel): the network (left unchanged; hooks removed).
        dataset (Dataset): items tensor or ``(tensor, ...)`` (model inputs).
        layers (Sequence[str]): module names.
        batch_size (int): images per forward.
        progress (bool): a tqdm bar.
    """
    maxima: dict[str, list[torch.Tensor]] = {n: [] for n in layers}
    nonzero: dict[str, list[torch.Tensor]] = {n: [] for n in layers}

    def reduce(name: str, out: torch.Tensor) -> None:
        flat = out.detach().flatten(2) if out.ndim == 4 else out.detach()[:, :, None]
        maxima[name].append(flat.amax(2).float().cpu())
        nonzero[name].append((flat != 0).any(2).cpu())

    param = next(module_of(model).parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    batches, total = iter_batches(dataset, batch_size)
    with LayerTaps(model, list(layers), reduce) as taps, \
            tqdm(total=total, unit="img", desc="statistics", disable=not progress) as bar:
        for batch in batches:
            if len(batch.ids):
                taps.run(batch.images.to(device, dtype))
            bar.update(batch.consumed)
    return {n: (torch.cat(maxima[n]), torch.cat(nonzero[n])) for n in layers}


def label_entropy(labels: Sequence[int]) -> float:
    """Entropy in bits of the label distribution of ``labels`` (0: all one class)."""
    if len(labels) == 0:
        return float("nan")
    counts: dict[int, int] = {}
    for label in labels:
        counts[int(label)] = counts.get(int(label), 0) + 1
    n = len(labels)
    return float(-sum(c / n * math.log2(c / n) for c in counts.values()) + 0.0)


def channel_summary(maxima: torch.Tensor, nonzero: torch.Tensor, top_values: torch.Tensor,
                    top_ids: torch.Tensor, labels: torch.Tensor | None,
                    class_names: list[str] | None, bins: int = HISTOGRAM_BINS) -> list[dict]:
    """The numbers of every channel of one layer.

    Args:
        maxima (torch.Tensor): ``[N, C]`` spatial max per image and channel.
        nonzero (torch.Tensor): ``[N, C]`` bool, the map is nonzero somewhere.
        top_values (torch.Tensor): ``[C, k]`` mined top-k values.
        top_ids (torch.Tensor): ``[C, k]`` their image ids (``-1``: empty).
        labels (torch.Tensor | None): ``[N]`` label per image.
        class_names (list[str] | None): names of the labels.
        bins (int): histogram bins.

    Returns:
        list[dict]: per channel ``max_activation``, ``mean_max``, ``dead_fraction``,
        ``histogram`` (``low``, ``high``, ``counts`` of the per-image maxima), and on labelled
        data ``top_labels``, ``label_counts`` and ``label_entropy`` (bits).
    """
    n, channels = maxima.shape
    out = []
    for c in range(channels):
        column = maxima[:, c].double()
        low, high = float(min(column.min(), 0.0)), float(column.max())
        if high <= low:
            high = low + 1.0
        counts = torch.histc(column, bins=bins, min=low, max=high).long().tolist()
        ids = [int(i) for i in top_ids[c] if i >= 0]
        record = {"channel": c, "max_activation": round(float(top_values[c, 0]), 6),
                  "mean_max": round(float(column.mean()), 6),
                  "dead_fraction": round(float((~nonzero[:, c]).sum()) / max(n, 1), 6),
                  "histogram": {"low": round(low, 6), "high": round(high, 6),
                                "counts": counts},
                  "top_values": [round(float(v), 6) for v in top_values[c][:len(ids)]],
                  "top_image_ids": ids}
        if labels is not None:
            top_labels = [int(labels[i]) for i in ids]
            record["top_labels"] = top_labels
            record["label_counts"] = {class_names[v] if class_names else str(v):
                                      top_labels.count(v) for v in sorted(set(top_labels))}
            record["label_entropy"] = round(label_entropy(top_labels), 6)
        out.append(record)
    return out
