"""Deletion and insertion curves and their areas (Petsiuk, Das & Saenko 2018, "RISE").

Deletion: starting from the image, replace pixels by a *substrate* in order of decreasing
saliency, a fixed number per step, and track the target's softmax probability; a faithful map
makes it fall fast (low area). Insertion: start from the substrate and put the image's pixels
back in the same order; a faithful map makes the probability rise fast (high area).

Choices, following the authors' reference code (``evaluation.py`` of eclique/RISE):

* substrates live in the model's **normalized** input space. Deletion uses zeros there
  (:func:`zeros_substrate`), which is the model's mean colour (grey), not black; insertion uses
  the image blurred with RISE's kernel (:func:`rise_kernel`: ``gkern(klen=11, nsig=5)``, a
  sigma-5 Gaussian filter of a delta in an 11 x 11 array with scipy's reflecting border, which
  is nearly a box: corner / centre weight 0.876) by :func:`blur_substrate`; ``kernel=
  "gaussian"`` gives a plain truncated Gaussian instead (corner / centre 0.368; ours, not
  RISE's);
* a "pixel" is a location: its channels are replaced together;
* the curve has ``n_steps + 1`` points, at the fractions of the pixels actually changed
  (``ceil(H * W / n_steps)`` pixels per step, so the last steps may all be at 1); the area is
  the trapezoid rule over those fractions, exact also when ``H * W`` is not a multiple of
  ``n_steps`` (the authors' ``(sum - first / 2 - last / 2) / n_steps`` assumes equal spacing:
  a 32 x 32 image with 100 steps gave 0.4655 for a curve whose area is 0.5);
* ties in the saliency are broken in a seeded random order (``tie_seed``), not raster order,
  so a constant map does not favour the top-left corner; :attr:`CausalCurve.constant_map`
  flags a map with no ranking at all;
* maps or images with NaN / Inf are refused;
* all ``n_steps + 1`` images of a curve go through the model in batches of ``batch_size``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deconv.errors import InvalidArgumentError
from deconv.model_state import eval_mode
from deconv.validation import check_finite

__all__ = ["CausalCurve", "causal_curve", "deletion", "insertion", "zeros_substrate",
           "blur_substrate", "rise_kernel", "area_under_curve", "saliency_order"]


@dataclass
class CausalCurve:
    """One deletion or insertion curve.

    Attributes:
        fractions (torch.Tensor): fraction of pixels changed at each point, [n_steps + 1].
        scores (torch.Tensor): target probability at each point, [n_steps + 1].
        auc (float): area under ``scores`` over ``fractions`` (trapezoid rule).
        constant_map (bool): the map was constant (every order is a tie: the curve measures a
            random order, not the map).
    """

    fractions: torch.Tensor
    scores: torch.Tensor
    auc: float
    constant_map: bool = False


def zeros_substrate(image: torch.Tensor) -> torch.Tensor:
    """Deletion substrate: zeros of the normalized input (the model's mean colour)."""
    return torch.zeros_like(image)


def rise_kernel(kernel_size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """The 1-D factor of RISE's blur kernel (``gkern`` in eclique/RISE ``evaluation.py``).

    RISE filters a delta in the middle of a ``kernel_size`` array with
    ``scipy.ndimage.gaussian_filter(sigma)`` (truncate 4, mode ``"reflect"``): the Gaussian's
    tails beyond the array are folded back in, so with sigma 5 on 11 px the kernel is nearly
    flat. The 2-D kernel is the outer product of this factor with itself (the filter is
    separable). Sums to 1.

    Returns:
        torch.Tensor: ``[kernel_size]`` float64 weights.
    """
    radius = int(4.0 * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    gauss = torch.exp(-0.5 * (offsets / sigma) ** 2)
    gauss = gauss / gauss.sum()
    centre, n = kernel_size // 2, kernel_size
    out = torch.zeros(n, dtype=torch.float64)
    for i in range(n):  # out[i] = sum_k w[k] * delta[reflect(i + k)]
        m = (i + offsets.long()) % (2 * n)
        m = torch.where(m >= n, 2 * n - 1 - m, m)
        out[i] = gauss[m == centre].sum()
    return out


def blur_substrate(image: torch.Tensor, kernel_size: int = 11, sigma: float = 5.0,
                   kernel: str = "rise") -> torch.Tensor:
    """Insertion substrate: the image blurred as in RISE's code (11 px kernel, sigma 5).

    Each channel is convolved separably with zero padding, as in the authors' code.

    Args:
        image (torch.Tensor): ``[C, H, W]`` or ``[N, C, H, W]``.
        kernel_size (int): odd kernel side.
        sigma (float): standard deviation in pixels.
        kernel (str): ``"rise"`` (:func:`rise_kernel`, the authors' nearly-box kernel) or
            ``"gaussian"`` (a Gaussian truncated to the kernel and renormalized; ours).
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise InvalidArgumentError(f"kernel_size must be a positive odd number, got {kernel_size}")
    if sigma <= 0:
        raise InvalidArgumentError(f"sigma must be > 0, got {sigma}")
    if kernel not in ("rise", "gaussian"):
        raise InvalidArgumentError(f"kernel must be 'rise' or 'gaussian', got {kernel!r}")
    batch = image.unsqueeze(0) if image.dim() == 3 else image
    if kernel == "rise":
        kernel_1d = rise_kernel(kernel_size, sigma).to(batch.device, batch.dtype)
    else:
        x = torch.arange(kernel_size, dtype=batch.dtype, device=batch.device) - kernel_size // 2
        kernel_1d = torch.exp(-x.pow(2) / (2 * sigma**2))
        kernel_1d = kernel_1d / kernel_1d.sum()
    channels = batch.shape[1]  # the 1-D kernel along rows, then along columns
    rows = kernel_1d.view(1, 1, kernel_size, 1).expand(channels, 1, kernel_size, 1)
    cols = kernel_1d.view(1, 1, 1, kernel_size).expand(channels, 1, 1, kernel_size)
    pad = kernel_size // 2
    out = F.conv2d(batch, rows, padding=(pad, 0), groups=channels)
    out = F.conv2d(out, cols, padding=(0, pad), groups=channels)
    return out[0] if image.dim() == 3 else out


def area_under_curve(scores: torch.Tensor, fractions: torch.Tensor | None = None) -> float:
    """Trapezoid area of ``scores`` over ``fractions`` (equally spaced on ``[0, 1]`` if None)."""
    if scores.numel() < 2:
        raise InvalidArgumentError("a curve needs at least two points")
    s = scores.double()
    if fractions is None:
        return float((s.sum() - s[0] / 2 - s[-1] / 2) / (s.numel() - 1))
    return float(torch.trapezoid(s, fractions.double().to(s.device)))


def saliency_order(saliency: torch.Tensor, tie_seed: int | None = 0) -> torch.Tensor:
    """Pixel indices (raster numbering) from most to least salient.

    Ties are broken in a random order drawn from ``tie_seed`` (reproducible, and neutral:
    no corner is favoured); ``tie_seed=None`` keeps raster order.
    """
    flat = saliency.reshape(-1)
    if tie_seed is None:
        return torch.sort(flat, descending=True, stable=True).indices
    generator = torch.Generator().manual_seed(int(tie_seed))
    shuffle = torch.randperm(flat.numel(), generator=generator).to(flat.device)
    order = torch.sort(flat[shuffle], descending=True, stable=True).indices
    return shuffle[order]


def causal_curve(model: nn.Module | Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor,
                 saliency: torch.Tensor, target: int, *, mode: str, n_steps: int = 16,
                 substrate: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 batch_size: int = 32, apply_softmax: bool = True,
                 tie_seed: int | None = 0) -> CausalCurve:
    """Deletion or insertion curve of one image.

    Args:
        model (nn.Module | LoadedModel | Callable): maps normalized images ``[B, C, H, W]`` to
            class scores ``[B, classes]`` (logits unless ``apply_softmax`` is False); a module
            runs in eval mode, restored afterwards.
        image (torch.Tensor): one normalized image ``[C, H, W]``.
        saliency (torch.Tensor): its map ``[H, W]`` (higher = more important).
        target (int): the class whose probability is tracked.
        mode (str): ``"deletion"`` or ``"insertion"``.
        n_steps (int): steps from the start image to the end image.
        substrate (Callable | None): ``image -> image`` giving what replaces (deletion) or what
            is replaced (insertion); default :func:`zeros_substrate` for deletion and
            :func:`blur_substrate` for insertion.
        batch_size (int): images per forward.
        apply_softmax (bool): apply softmax to the model's output (True for logits).
        tie_seed (int | None): seed of the order among pixels of equal saliency
            (:func:`saliency_order`); None: raster order.

    Returns:
        CausalCurve: fractions, probabilities and area.

    Raises:
        ValueError: bad shapes, mode or step count; NaN / Inf in the map or the image.
    """
    if mode not in ("deletion", "insertion"):
        raise InvalidArgumentError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    if image.dim() != 3:
        raise InvalidArgumentError(
            f"image must be one normalized image [C, H, W], got {tuple(image.shape)}")
    if saliency.shape != image.shape[-2:]:
        raise InvalidArgumentError(
            f"saliency must be [H, W] = {tuple(image.shape[-2:])}, got "
                                f"{tuple(saliency.shape)}; reduce the channels first "
                                f"(deconv.methods.reduce_channels)")
    check_finite("saliency", saliency)
    check_finite("image", image)
    if n_steps < 1 or batch_size < 1:
        raise InvalidArgumentError(
            f"n_steps and batch_size must be >= 1, got {n_steps}, {batch_size}")
    if substrate is None:
        substrate = zeros_substrate if mode == "deletion" else blur_substrate
    channels, height, width = image.shape
    pixels = height * width
    per_step = math.ceil(pixels / n_steps)
    order = saliency_order(saliency.to(image.device), tie_seed)
    # rank[p] = position of pixel p in the order; step k changes the pixels of rank < k * per_step
    rank = torch.empty(pixels, dtype=torch.long, device=image.device)
    rank[order] = torch.arange(pixels, device=image.device)
    other = substrate(image)
    start, end = (image, other) if mode == "deletion" else (other, image)
    scores = []
    if not isinstance(model, nn.Module) and isinstance(getattr(model, "model", None), nn.Module):
        model = model.model  # a LoadedModel
    state = eval_mode(model, inplace=False) if isinstance(model, nn.Module) else nullcontext()
    with torch.no_grad(), state:
        for first in range(0, n_steps + 1, batch_size):
            steps = torch.arange(first, min(first + batch_size, n_steps + 1), device=image.device)
            changed = (rank.unsqueeze(0) < steps.unsqueeze(1) * per_step).view(-1, 1, height,
                                                                             width)
            batch = torch.where(changed, end.unsqueeze(0), start.unsqueeze(0))
            out = model(batch)
            probs = torch.softmax(out, dim=1) if apply_softmax else out
            scores.append(probs[:, target].detach().double().cpu())
    scores_t = torch.cat(scores)
    fractions = torch.clamp(torch.arange(n_steps + 1, dtype=torch.float64) * per_step / pixels,
                            max=1.0)
    constant = bool(saliency.max() == saliency.min())
    return CausalCurve(fractions, scores_t, area_under_curve(scores_t, fractions), constant)


def deletion(model, image: torch.Tensor, saliency: torch.Tensor, target: int,
             **options) -> CausalCurve:
    """Deletion curve (lower area = more faithful); see :func:`causal_curve` for options."""
    return causal_curve(model, image, saliency, target, mode="deletion", **options)


def insertion(model, image: torch.Tensor, saliency: torch.Tensor, target: int,
              **options) -> CausalCurve:
    """Insertion curve (higher area = more faithful); see :func:`causal_curve` for options."""
    return causal_curve(model, image, saliency, target, mode="insertion", **options)
