"""``build_atlas``: a browsable, offline atlas of every feature map of chosen layers.

Stages (each with a progress bar, each skipping what an earlier run finished): mining,
projections, optima, pages. The output folder's fingerprint (model weights, data, settings)
is checked first: an atlas of another model, weights or data is refused (or, with
``rebuild``, deleted), never mixed. More layers or a larger optima budget on a later run
reuse everything done.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from deconv.atlas import stages
from deconv.atlas.model_card import model_card, model_fingerprint, order_layers, strongest_links
from deconv.atlas.pages import write_site
from deconv.atlas.sources import QUICK_IMAGES, AtlasData, atlas_data
from deconv.atlas.workdir import WorkDir
from deconv.errors import InvalidArgumentError

__all__ = ["build_atlas", "AtlasBuild", "FORMAT"]

FORMAT = "deconv.atlas/1"


@dataclass
class AtlasBuild:
    """What :func:`build_atlas` wrote.

    Attributes:
        out (Path): the atlas folder (open ``out / "index.html"``).
        manifest (dict): the contents of ``atlas.json``.
        reused (bool): earlier work in ``out`` was continued.
        timings (dict[str, float]): seconds per stage of this run.
    """

    out: Path
    manifest: dict
    reused: bool
    timings: dict[str, float]

    @property
    def index(self) -> Path:
        """Path of the index page."""
        return self.out / "index.html"


def _min_max(images: torch.Tensor) -> torch.Tensor:
    low = images.amin(dim=(-3, -2, -1), keepdim=True)
    span = (images.amax(dim=(-3, -2, -1), keepdim=True) - low).clamp_min(1e-12)
    return (images - low) / span


def build_atlas(model, data, layers: Sequence[str | int] | str | int, out: str | Path, *,
                k: int = 9, quick: bool = False, limit: int | None = None,
                optima: int | None = None, optima_steps: int | None = None,
                optima_size: int | None = None, tile: int = 64, batch_size: int = 64,
                deprocess: Callable | None = None, class_names: list[str] | None = None,
                guided: bool = True, rebuild: bool = False, progress: bool = True,
                seed: int = 0) -> AtlasBuild:
    """Build (or continue) the atlas of ``layers`` of ``model`` over ``data`` in ``out``.

    Args:
        model (nn.Module | LoadedModel): the network (never changed). A zoo model gives the
            preprocessing, the paper layer numbers and pixel de-normalisation.
        data: ``"fashion-mnist:test"``, ``"fashion-mnist:train"``, ``"samples"``, a folder of
            images, a Dataset (items: tensor or ``(tensor, label)``; labels give class
            selectivity) or a tensor ``[N, 3, H, W]`` of model inputs.
        layers: module names or paper layer numbers.
        out (str | Path): the atlas folder (new, empty or an earlier atlas of the same model
            and data).
        k (int): top images per channel.
        quick (bool): a smoke build: the first 300 images, 16 optimisation steps; every page.
        limit (int | None): mine only the first ``limit`` images.
        optima (int | None): optimise at most this many more channels per layer in this run
            (None: all; 0: none); later runs fill in the rest.
        optima_steps (int | None): Adam steps per optimum (default 128, quick 16).
        optima_size (int | None): optimum side in pixels (default: the input side, at most 128).
        tile (int): side of each displayed patch and projection.
        batch_size (int): images per forward when mining.
        deprocess (Callable | None): model input -> pixels in [0, 1]; default the zoo model's
            ``deprocess``, else a min-max per image.
        class_names (list[str] | None): label names of a labelled Dataset.
        guided (bool): also the guided-backprop projections (a full backward pass per unit
            through :class:`deconv.GenericDeconvnet`; the costliest stage on large models).
        rebuild (bool): delete an atlas of another model/weights/data/settings in ``out``
            instead of refusing.
        progress (bool): progress bars per stage.
        seed (int): seed of the optima.

    Returns:
        AtlasBuild: the folder, the manifest and this run's stage timings.

    Raises:
        AtlasMismatchError: ``out`` holds another atlas (see ``rebuild``) or other files.
        InvalidArgumentError: bad ``k``, ``optima``, ``tile`` or layers.
    """
    for label, value in (("k", k), ("tile", tile), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgumentError(f"{label} must be a positive int, got {value!r}")
    if optima is not None and (isinstance(optima, bool) or optima < 0):
        raise InvalidArgumentError(f"optima must be None (all) or a number of channels >= 0, "
                                   f"got {optima!r}")
    if isinstance(layers, (str, int)):
        layers = [layers]
    names = order_layers(model, layers)
    if limit is None and quick:
        limit = QUICK_IMAGES
    source = data if isinstance(data, AtlasData) else atlas_data(data, model, limit,
                                                                  class_names)
    input_size = tuple(source.image(0).shape[-2:])
    steps = optima_steps if optima_steps is not None else (16 if quick else 128)
    size = optima_size or min(128, max(input_size))
    optimum = {"size": size, "steps": steps, "lr": 0.05, "seed": seed,
               "parametrization": "fourier", "decorrelate": True, "transforms": "standard"}
    settings = {"k": k, "tile": tile, "optima": optimum, "guided": guided, "format": FORMAT,
                "distinct": stages.DISTINCT if source.source_boxes is not None else None}
    fingerprint = {"model": model_fingerprint(model), "data": source.fingerprint,
                   "settings": settings}
    out = Path(out)
    work = WorkDir(out)
    reused = work.claim(fingerprint, rebuild)
    if deprocess is None:
        deprocess = model.deprocess if not isinstance(model, nn.Module) \
            and hasattr(model, "deprocess") else _min_max

    timings: dict[str, float] = {}
    cards = model_card(model, names, input_size)
    timings.update(stages.mine_layers(model, source, names, work, k, batch_size, progress))
    start = time.perf_counter()
    # units sent down together: 256 at 64 x 64 pixels, fewer for larger inputs (memory)
    units = max(8, min(256, 256 * 64 * 64 // (input_size[0] * input_size[1])))
    for card in cards:
        begin = time.perf_counter()
        if stages.project_layer(model, source, card, work, deprocess, tile, units, progress,
                                guided):  # layers done by an earlier run are not timed
            timings[f"projections_{card.name}_s"] = time.perf_counter() - begin
    timings["projections_s"] = time.perf_counter() - start
    optima_seconds = 0.0
    for card in cards:
        optima_seconds += stages.optimize_layer(model, card, work, optima, optimum, 128,
                                                progress)
    timings["optima_s"] = optima_seconds
    start = time.perf_counter()
    links = strongest_links(model, cards)
    model_info = {"name": getattr(model, "name", type(model).__name__),
                  "source": getattr(model, "source", ""), "fingerprint": fingerprint["model"],
                  "input_size": list(input_size),
                  "class": type(getattr(model, "model", model)).__name__}
    data_info = dict(source.description, fingerprint=source.fingerprint)
    manifest = write_site(out, work, model_info, data_info, settings, cards, links,
                          source.class_names, timings, progress)
    timings["pages_s"] = time.perf_counter() - start
    return AtlasBuild(out, manifest, reused, {k: round(v, 3) for k, v in timings.items()})
