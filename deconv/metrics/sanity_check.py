"""Model-randomization sanity check (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

Also :func:`input_dependence`: the same class explained on another photo (does the map change?).

Cascading randomization: starting from the top of the network, re-initialize the weights of one
more group of layers at each step (keeping the ones already randomized), recompute each
method's maps, and compare them with the maps of the trained model. A method that explains the
*model* must change as the weights are destroyed; a method whose maps stay the same is
explaining the image (an edge detector), not the model.

Choices:

* the model is deep-copied; the caller's model is never touched;
* a parameter tensor is replaced by Gaussian noise of the **same standard deviation** as the
  trained tensor (mean 0 for weights with 2+ dimensions; the trained mean for 1-D parameters
  such as biases and batch-norm affine terms), drawn from one seeded generator; keeping the
  scale keeps the activations from vanishing or exploding, so the comparison measures the
  weights' *values*, not a collapse of the signal; batch-norm running statistics are kept;
* similarities are computed per image between the map of the randomized model and the map of
  the trained model: Spearman rank correlation of the signed maps, of their absolute values
  (Adebayo's "ABS" variant) and the SSIM of ``|map| / max |map|`` (data range 1, skimage's
  default 7 x 7 window). A constant map has no ranking: its Spearman correlation is NaN.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from deconv.errors import InvalidArgumentError
from deconv.layers import module_of, paper_layers_of, register_paper_layers
from deconv.methods.registry import attribute

__all__ = ["SanityCheck", "cascading_randomization", "input_dependence", "randomize_parameters",
           "spearman", "ssim", "map_similarity", "parameter_layers_top_down"]

Explain = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class SanityCheck:
    """Similarity of each method's maps to the trained model's maps, per randomization step.

    Attributes:
        steps (list[str]): step labels; ``steps[0] == "trained"``, then the layer group that
            step ``k`` randomized in addition to all the groups before it.
        spearman (dict[str, np.ndarray]): method -> [steps, N] rank correlation, signed maps.
        spearman_abs (dict[str, np.ndarray]): method -> [steps, N] rank correlation of ``|map|``.
        ssim (dict[str, np.ndarray]): method -> [steps, N] SSIM of ``|map| / max |map|``.
        maps (dict[str, list[torch.Tensor]]): method -> one ``[N, H, W]`` tensor per step
            (kept only with ``keep_maps=True``).
    """

    steps: list[str]
    spearman: dict[str, np.ndarray]
    spearman_abs: dict[str, np.ndarray]
    ssim: dict[str, np.ndarray]
    maps: dict[str, list[torch.Tensor]] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, list[float | int | None]]]:
        """Per method, the mean over images at each step of each similarity (JSON-ready).

        Means leave out NaN values (a Spearman correlation with a constant map), and
        ``<similarity>_nan`` counts them per step, so a mean over fewer images says so.
        """
        tables = {"spearman": self.spearman, "spearman_abs": self.spearman_abs, "ssim": self.ssim}
        out: dict[str, dict[str, list]] = {}
        for name in self.spearman:
            out[name] = {}
            for key, table in tables.items():
                out[name][key] = [_nanmean(row) for row in table[name]]
                out[name][f"{key}_nan"] = [int(np.isnan(row).sum()) for row in table[name]]
        return out


def _nanmean(values: np.ndarray) -> float | None:
    """Mean ignoring NaN, rounded; None when every value is NaN."""
    finite = values[~np.isnan(values)]
    return round(float(finite.mean()), 4) if finite.size else None


def spearman(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Spearman rank correlation of two maps (flattened); NaN if either is constant."""
    from scipy.stats import spearmanr

    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise InvalidArgumentError(f"maps differ in size: {x.shape} vs {y.shape}")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(x, y).statistic)


def _unit_abs(m: np.ndarray) -> np.ndarray:
    m = np.abs(np.asarray(m, dtype=np.float64))
    top = m.max() if m.size else 0.0
    return m / top if top > 0 else np.zeros_like(m)


def ssim(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """SSIM of ``|a| / max|a|`` and ``|b| / max|b|`` (data range 1); 2-D maps."""
    from skimage.metrics import structural_similarity

    x, y = _unit_abs(a), _unit_abs(b)
    if x.ndim != 2 or x.shape != y.shape:
        raise InvalidArgumentError(
            f"SSIM needs two maps [H, W] of the same size, got {x.shape}, {y.shape}")
    win = min(7, x.shape[0], x.shape[1])
    win -= 1 - win % 2  # odd
    return float(structural_similarity(x, y, data_range=1.0, win_size=win))


def map_similarity(reference: torch.Tensor, maps: torch.Tensor) -> tuple[np.ndarray, ...]:
    """Per-image (spearman, spearman_abs, ssim) between two batches of maps ``[N, H, W]``."""
    ref = reference.detach().cpu().double().numpy()
    new = maps.detach().cpu().double().numpy()
    rho = np.array([spearman(r, m) for r, m in zip(ref, new)])
    rho_abs = np.array([spearman(np.abs(r), np.abs(m)) for r, m in zip(ref, new)])
    sim = np.array([ssim(r, m) for r, m in zip(ref, new)])
    return rho, rho_abs, sim


def parameter_layers_top_down(model: nn.Module, images: torch.Tensor) -> list[str]:
    """Leaf modules that hold parameters, in reverse order of execution (output layer first)."""
    order: list[str] = []
    handles = []
    try:
        for name, module in model.named_modules():
            if name and not list(module.children()) and any(True for _ in
                                                             module.parameters(recurse=False)):
                handles.append(module.register_forward_hook(
                    lambda _m, _i, _o, name=name: order.append(name)))
        with torch.no_grad():
            model(images[:1])
    finally:
        for handle in handles:
            handle.remove()
    seen: list[str] = []
    for name in reversed(order):
        if name not in seen:
            seen.append(name)
    return seen


@torch.no_grad()
def randomize_parameters(model: nn.Module, prefixes: Sequence[str],
                         generator: torch.Generator) -> int:
    """Replace, in place, every parameter under ``prefixes`` by scale-matched Gaussian noise.

    Args:
        model (nn.Module): a copy you own (it is changed).
        prefixes (Sequence[str]): module names; their parameters (recursively) are randomized.
        generator (torch.Generator): the seeded source of noise (CPU).

    Returns:
        int: how many parameter tensors were replaced. Constant tensors (standard deviation 0,
        e.g. a fresh batch-norm weight of ones or a zero bias) have no scale to match: they
        are left unchanged and not counted.

    Raises:
        ValueError: a prefix names no module.
    """
    count = 0
    for prefix in prefixes:
        try:
            module = model.get_submodule(prefix)
        except AttributeError as exc:
            raise InvalidArgumentError(f"no module named {prefix!r} to randomize; use names from "
                                                           f"model.named_modules()") from exc
        for p in module.parameters():
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float64)
            std = float(p.double().std(unbiased=False)) if p.numel() > 1 else 0.0
            if std == 0.0:
                continue  # noise * 0 + mean would give the tensor back unchanged
            mean = float(p.double().mean()) if p.dim() < 2 else 0.0
            p.copy_((noise * std + mean).to(p.dtype))
            count += 1
    return count


def cascading_randomization(model, images: torch.Tensor, target,
                            methods: Sequence[str] | Mapping[str, Explain], *,
                            groups: Sequence[str | Sequence[str]] | None = None, seed: int = 0,
                            options: Mapping[str, dict] | None = None,
                            keep_maps: bool = False) -> SanityCheck:
    """Cascading randomization from the top layer down, with every method at every step.

    Args:
        model (nn.Module | LoadedModel): the trained classifier (copied, never changed).
        images (torch.Tensor): normalized images ``[N, 3, H, W]``.
        target (int | Sequence[int] | torch.Tensor): class ids, one per image; kept fixed.
        methods (Sequence[str] | Mapping[str, Callable]): registry names (run through
            :func:`deconv.methods.attribute`), or ``name -> f(model, images, target) -> [N, H, W]``.
        groups (Sequence[str | Sequence[str]] | None): what each step randomizes, top first: a
            module name or a list of names. Default: every leaf module with parameters, output
            layer first (:func:`parameter_layers_top_down`).
        seed (int): seed of the noise.
        options (Mapping[str, dict] | None): extra keyword options per registry method.
        keep_maps (bool): keep every map (for figures).

    Returns:
        SanityCheck: similarities per method, step and image.
    """
    module = copy.deepcopy(module_of(model))
    register_paper_layers(module, paper_layers_of(model))  # the copy keeps the layer numbers
    options = dict(options or {})
    if isinstance(methods, Mapping):
        explainers = dict(methods)
    else:
        explainers = {name: _registry_explainer(name, options.get(name, {})) for name in methods}
    if groups is None:
        groups = parameter_layers_top_down(module, images)
    generator = torch.Generator().manual_seed(seed)
    steps = ["trained"]
    reference = {name: explain(module, images, target).detach() for name, explain
                 in explainers.items()}
    per_step: dict[str, list[tuple[np.ndarray, ...]]] = {
        name: [map_similarity(ref, ref)] for name, ref in reference.items()}
    maps = {name: [ref] for name, ref in reference.items()} if keep_maps else {}
    for group in groups:
        prefixes = [group] if isinstance(group, str) else list(group)
        randomize_parameters(module, prefixes, generator)
        steps.append("+".join(prefixes))
        for name, explain in explainers.items():
            current = explain(module, images, target).detach()
            per_step[name].append(map_similarity(reference[name], current))
            if keep_maps:
                maps[name].append(current)
    stack = {name: [np.stack([s[i] for s in rows]) for i in range(3)]
             for name, rows in per_step.items()}
    return SanityCheck(steps, {n: v[0] for n, v in stack.items()},
                       {n: v[1] for n, v in stack.items()}, {n: v[2] for n, v in stack.items()},
                       maps)


def input_dependence(model, images: torch.Tensor, target, method: str | Explain, *,
                     reference: torch.Tensor | None = None,
                     options: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Does the map depend on the image? Explain the same class on a *different* photo.

    For each image ``i`` the map of image ``i`` for class ``target[i]`` is compared with the map
    of image ``i + 1`` (cyclically) for the same class ``target[i]``. A method whose maps are
    the same for every photo (Spearman of ``|map|`` near 1) explains the weights, not the input:
    this happens, for instance, to a deconvnet projection of a class logit through a network
    with no max-pooling, where nothing in the backward pass depends on the input (Kindermans
    et al. 2017 discuss related input-invariance failures).

    Args:
        model (nn.Module | LoadedModel): the classifier (not changed).
        images (torch.Tensor): normalized images ``[N, 3, H, W]``, ``N >= 2``.
        target (int | Sequence[int] | torch.Tensor): class ids, one per image.
        method (str | Callable): a registry name or ``f(model, images, target) -> [N, H, W]``.
        reference (torch.Tensor | None): the maps of ``images`` for ``target`` if already
            computed (``[N, H, W]``); computed otherwise.
        options (dict | None): keyword options for a registry method.

    Returns:
        tuple[np.ndarray, np.ndarray]: per image, Spearman of ``|map|`` and SSIM.

    Raises:
        ValueError: fewer than two images.
    """
    if images.shape[0] < 2:
        raise InvalidArgumentError("input_dependence needs at least two images (it swaps them)")
    explain = (_registry_explainer(method, options or {}) if isinstance(method, str)
               else method)
    module = module_of(model)
    target_t = torch.as_tensor(target).reshape(-1)
    if target_t.numel() == 1:
        target_t = target_t.expand(images.shape[0])
    if reference is None:
        reference = explain(module, images, target_t)
    swapped = explain(module, images.roll(-1, dims=0), target_t)
    _, rho_abs, sim = map_similarity(reference, swapped)
    return rho_abs, sim


def _registry_explainer(name: str, options: dict) -> Explain:
    def explain(module: nn.Module, images: torch.Tensor, target) -> torch.Tensor:
        return attribute(name, module, images, target, **options)
    return explain
