"""``occlusion_sweep``: slide a square over an image and watch a feature map and the classifier.

Zeiler & Fergus (2014), Section 4.2 and Fig. 7: a grey square is moved over the image; for
each position we record the probability of the correct class, the most probable label and the
total activation of one feature map (the strongest one in the unoccluded image). If the model
really uses the object, the probability drops where the object is hidden.
"""

from __future__ import annotations

import functools
import numbers
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from deconv._deprecation import warn_deprecated
from deconv.layers import resolve_layer
from deconv.model_state import eval_mode
from deconv.occlusion.engines import capture_layer_output, evaluate_occluded, occlusion_methods
from deconv.occlusion.fills import make_fill
from deconv.occlusion.grid import occluder_boxes, window_average
from deconv.zoo.registry import LoadedModel

__all__ = ["OcclusionResult", "occlusion_sweep"]


@dataclass
class OcclusionResult:
    """Everything a sweep measured, on the grid of occluder positions (``rows x cols``).

    Attributes:
        boxes (torch.Tensor): long ``[rows * cols, 4]`` windows ``(y0, y1, x0, x1)``
            (row-major, end exclusive, clipped at the border).
        grid_shape (tuple[int, int]): ``(rows, cols)``.
        image_size (tuple[int, int]): ``(H, W)`` of the model input.
        patch (tuple[int, int]): occluder size.
        stride (tuple[int, int]): step between positions.
        fill (str): what the occluder was filled with.
        method (str): engine that computed it.
        probability (torch.Tensor | None): ``[rows, cols]`` probability of ``target``.
        label (torch.Tensor | None): ``[rows, cols]`` most probable class index.
        label_probability (torch.Tensor | None): ``[rows, cols]`` its probability.
        drop_map (torch.Tensor | None): float64 ``[H, W]``: per pixel, the mean over the windows
            covering it of ``p(target | image) - p(target | occluded)`` (captum's
            ``Occlusion`` convention on a softmax output); NaN where no window covers it.
        target (int | None): the class whose probability is mapped.
        target_name (str | None): its name, when the model has categories.
        base_probability (float | None): ``p(target)`` of the unoccluded image.
        base_label (int | None): top class of the unoccluded image.
        feature_total (torch.Tensor | None): ``[rows, cols]`` sum over space of the chosen
            feature map of the occluded image.
        feature_layer (str | None): module name of that feature map's layer.
        feature_channel (int | None): its channel.
        base_feature_total (float | None): the same total for the unoccluded image.
        feature_peak (tuple[int, int] | None): ``(y, x)`` of the map's strongest activation in
            the unoccluded image (in that layer's grid).
        model_name (str): which model gave the probabilities.
        feature_model_name (str | None): which model gave the feature map.
        categories (list[str] | None): class names of the classifier.
    """

    boxes: torch.Tensor
    grid_shape: tuple[int, int]
    image_size: tuple[int, int]
    patch: tuple[int, int]
    stride: tuple[int, int]
    fill: str
    method: str
    probability: torch.Tensor | None = None
    label: torch.Tensor | None = None
    label_probability: torch.Tensor | None = None
    drop_map: torch.Tensor | None = None
    target: int | None = None
    target_name: str | None = None
    base_probability: float | None = None
    base_label: int | None = None
    feature_total: torch.Tensor | None = None
    feature_layer: str | None = None
    feature_channel: int | None = None
    base_feature_total: float | None = None
    feature_peak: tuple[int, int] | None = None
    model_name: str = ""
    feature_model_name: str | None = None
    categories: list[str] | None = field(default=None, repr=False)

    def box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """The window ``(y0, y1, x0, x1)`` of grid cell ``(row, col)``."""
        return tuple(self.boxes[row * self.grid_shape[1] + col].tolist())

    def label_name(self, index: int) -> str:
        """Class name of ``index`` (its number when the model has no categories)."""
        return self.categories[index] if self.categories else str(index)

    def pixel_map(self, grid_values: torch.Tensor) -> torch.Tensor:
        """Average any ``[rows, cols]`` grid (e.g. ``feature_total``) onto pixels ``[H, W]``."""
        return window_average(grid_values.reshape(-1), self.boxes, *self.image_size)

    def summary(self) -> dict:
        """A JSON-ready dict of the settings and the headline numbers."""
        out = {"model": self.model_name, "feature_model": self.feature_model_name,
               "patch": list(self.patch), "stride": list(self.stride), "fill": self.fill,
               "grid": list(self.grid_shape), "image_size": list(self.image_size),
               "method": self.method}
        if self.probability is not None:
            low = int(self.probability.argmin())
            out.update(target=self.target, target_name=self.target_name,
                       base_probability=self.base_probability,
                       min_probability=float(self.probability.min()),
                       min_probability_box=list(self.boxes[low].tolist()),
                       labels={self.label_name(int(i)): int((self.label == i).sum())
                               for i in self.label.unique()})
        if self.feature_total is not None:
            out.update(feature_layer=self.feature_layer, feature_channel=self.feature_channel,
                       base_feature_total=self.base_feature_total,
                       min_feature_total=float(self.feature_total.min()),
                       min_feature_box=list(self.boxes[int(self.feature_total.argmin())].tolist()))
        return out


def _in_eval_mode(sweep: Callable[..., OcclusionResult]) -> Callable[..., OcclusionResult]:
    """Run ``sweep`` with its model (and feature model) in eval mode, restored afterwards."""

    @functools.wraps(sweep)
    def wrapper(model, image, **options) -> OcclusionResult:
        feature_model = options.get("feature_model")
        modules = [_unwrap(m, what)[0] for m, what in ((model, "model"),
                                                       (feature_model, "feature_model"))
                   if m is not None]
        if any(m.training for m in modules):
            warnings.warn("the model is in training mode: the sweep runs it in eval mode "
                          "(no dropout, batch-norm running statistics) and puts it back; call "
                          "model.eval() to silence this", stacklevel=2)
        with ExitStack() as stack:
            for m in modules:
                stack.enter_context(eval_mode(m))
            return sweep(model, image, **options)

    return wrapper


@_in_eval_mode
def occlusion_sweep(model: nn.Module | LoadedModel, image: torch.Tensor | Image.Image | np.ndarray,
                    *, patch: int | tuple[int, int], stride: int | tuple[int, int],
                    fill: str | float | torch.Tensor = "mean", target: int | str | None = None,
                    layer: str | int | None = None, channel: int | str = "strongest",
                    feature_model: nn.Module | LoadedModel | None = None, batch_size: int = 32,
                    method: str = "auto", progress: bool = True,
                    feature: tuple[str | int, int | str] | None = None) -> OcclusionResult:
    """Slide an occluder over ``image`` and record the classifier and a feature map per position.

    Zeiler & Fergus (2014), Fig. 7. Positions follow captum's ``Occlusion`` grid (see
    :mod:`deconv.occlusion.grid`): starts ``0, s, ..., k*s`` with ``k = ceil((H - p) / s)``,
    the last window clipped at the border.

    Args:
        model (nn.Module | LoadedModel): the classifier (logits ``[B, K]``; probabilities are
            their softmax). A model without a head (``LoadedModel.categories is None`` or a
            non-2-D output) gives no probabilities; then ``layer`` is required.
        image (torch.Tensor | PIL.Image.Image | np.ndarray): a model input ``[C, H, W]`` or
            ``[1, C, H, W]`` already normalized, or a picture (needs a ``LoadedModel``, whose
            ``preprocess`` is applied).
        patch (int | tuple[int, int]): occluder side(s) in input pixels.
        stride (int | tuple[int, int]): step between positions.
        fill (str | float | torch.Tensor): ``"mean"`` (the model's mean pixel: the paper's grey),
            ``"image_mean"``, ``"zero"``, ``"black"``, ``"blur"``, a number or a tensor; see
            :func:`deconv.occlusion.fills.make_fill`.
        target (int | str | None): class index or name; the top class of the unoccluded image
            by default.
        layer (str | int | None): a layer of the feature model (module name or paper layer
            number) whose feature map ``channel`` is totalled per position; None: no feature map.
        channel (int | str): the feature map of ``layer``; ``"strongest"`` (default) picks the
            map holding the largest activation of the layer in the unoccluded image.
        feature_model (nn.Module | LoadedModel | None): take the feature map from this model
            instead (e.g. probabilities from ``efficientnet-lite0``, maps from ``hed-vgg16``). The
            same occluded picture is shown to both: when both are ``LoadedModel`` the input is
            converted between their normalizations; otherwise both must take the same input.
        batch_size (int): occluder positions per forward pass.
        method (str): occlusion engine (see :func:`deconv.occlusion.occlusion_methods`), or
            ``"auto"`` (default): the exact incremental engine (Krypton-style; same numbers,
            several times faster) for each model it supports, else the batched ``"naive"`` one.
        progress (bool): show a progress bar (tqdm) over positions.
        feature (tuple | None): deprecated spelling of ``layer=..., channel=...`` as one pair
            ``(layer, channel)``; it still works, with a ``DeprecationWarning``.

    Returns:
        OcclusionResult: the maps on the grid of positions and the per-pixel drop map.

    Raises:
        ValueError: patch larger than the image, stride or patch < 1, unknown class, layer,
            channel, fill or method, or an image with NaN / inf.
        TypeError: wrong argument types, an integer image, or an image dtype that differs
            from the model's parameters.
    """
    module, loaded = _unwrap(model, "model")
    if method != "auto" and method not in occlusion_methods():
        raise ValueError(f"unknown method {method!r}; choose one of {occlusion_methods()}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    x = _as_input(image, module, loaded)
    height, width = x.shape[1:]
    patch_hw = _pair(patch, "patch")
    stride_hw = _pair(stride, "stride")
    if patch_hw[0] > height or patch_hw[1] > width:
        raise ValueError(f"patch {patch_hw} is larger than the image {(height, width)}; use a "
                         "patch no larger than the image")
    fill_image, fill_text = make_fill(fill, x, patch=patch_hw,
                                      normalize=loaded.normalize if loaded else None)
    boxes, rows, cols = occluder_boxes(height, width, patch_hw, stride_hw)

    same_model = feature_model is None or feature_model is model
    f_module, f_loaded = (module, loaded) if same_model else _unwrap(feature_model,
                                                                     "feature_model")
    method, f_method = _resolve_method(method, module), _resolve_method(method, f_module)
    if feature is not None:
        warn_deprecated("occlusion_sweep(feature=(layer, channel))",
                        "pass layer=... and channel=... instead")
        if layer is not None:
            raise TypeError("give either layer= (and channel=) or the old feature=, not both")
        layer, channel = _parse_feature(feature)
    if layer is not None:
        layer, channel = _check_feature(layer, channel,
                                        feature_model if not same_model else model)
    fx, f_fill = (x, fill_image) if same_model else (
        _convert_input(x, loaded, f_loaded, f_module), _convert_input(fill_image, loaded,
                                                                      f_loaded, f_module))

    # The unoccluded image: classifier output, and the full feature layer to pick the map.
    if same_model and layer is not None:
        base_out, base_layer = capture_layer_output(module, x.unsqueeze(0), layer)
    else:
        base_out, _ = capture_layer_output(module, x.unsqueeze(0), None)
        base_layer = None
        if layer is not None:
            _, base_layer = capture_layer_output(f_module, fx.unsqueeze(0), layer)
    has_head = (base_out is not None and base_out.ndim == 2
                and not (loaded is not None and loaded.categories is None))
    if not has_head and layer is None:
        raise ValueError("this model has no classifier head (its output is not [B, classes]); "
                         "pass layer= (and channel=) to sweep a feature map instead")
    result = OcclusionResult(boxes=boxes, grid_shape=(rows, cols), image_size=(height, width),
                             patch=patch_hw, stride=stride_hw, fill=fill_text,
                             method=method if same_model or f_method == method
                             else f"{method} (model), {f_method} (feature model)",
                             model_name=_name(model), categories=loaded.categories if loaded
                             else None)
    if has_head:
        base_prob = torch.softmax(base_out, dim=1)[0]
        result.target = _resolve_target(target, base_prob, result.categories)
        result.target_name = result.label_name(result.target) if result.categories else None
        result.base_probability = float(base_prob[result.target])
        result.base_label = int(base_prob.argmax())
    elif target is not None:
        raise ValueError("target was given but the model has no classifier head")
    if layer is not None:
        channel = _resolve_channel(channel, base_layer, layer)
        result.feature_layer, result.feature_channel = layer, channel
        result.feature_model_name = _name(feature_model if not same_model else model)
        base_map = base_layer[0, channel]
        result.base_feature_total = float(base_map.sum())
        if base_map.ndim == 2:
            peak = int(base_map.argmax())
            result.feature_peak = (peak // base_map.shape[1], peak % base_map.shape[1])

    probs, labels, label_probs, totals = [], [], [], []
    with tqdm(total=len(boxes), desc="occlusion", unit="pos", disable=not progress) as bar:
        for start in range(0, len(boxes), batch_size):
            chunk = boxes[start:start + batch_size]
            main = evaluate_occluded(module, x, fill_image, chunk,
                                     layer=layer if same_model else None,
                                     need_output=has_head, method=method) \
                if has_head or same_model else None
            if has_head:
                p = torch.softmax(main.output, dim=1)
                probs.append(p[:, result.target])
                top = p.max(dim=1)
                labels.append(top.indices)
                label_probs.append(top.values)
            if layer is not None:
                f_batch = main if same_model else evaluate_occluded(
                    f_module, fx, f_fill, chunk, layer=layer, need_output=False, method=f_method)
                totals.append(f_batch.layer_totals[:, channel])
            bar.update(len(chunk))
    if has_head:
        result.probability = torch.cat(probs).view(rows, cols).cpu()
        result.label = torch.cat(labels).view(rows, cols).cpu()
        result.label_probability = torch.cat(label_probs).view(rows, cols).cpu()
        drop = result.base_probability - result.probability.double()
        result.drop_map = window_average(drop.reshape(-1), boxes, height, width)
    if layer is not None:
        result.feature_total = torch.cat(totals).view(rows, cols).cpu()
    return result


def _resolve_method(method: str, module: nn.Module) -> str:
    """``"auto"``: the chain engine ``"incremental"`` where it supports ``module``, else the
    graph engine ``"graph"`` where it can trace it, else ``"naive"`` with a warning saying why."""
    if method != "auto":
        return method
    from deconv.occlusion.graph_engine import supports_graph
    from deconv.occlusion.incremental import supports

    if supports(module)[0]:
        return "incremental"
    ok, reason = supports_graph(module)
    if ok:
        return "graph"
    warnings.warn(f"occlusion_sweep: no incremental engine can run this model ({reason}); "
                  f"using the naive sweep (same numbers, slower)", stacklevel=3)
    return "naive"


def _unwrap(model, what: str) -> tuple[nn.Module, LoadedModel | None]:
    if isinstance(model, LoadedModel):
        return model.model, model
    if isinstance(model, nn.Module):
        return model, None
    raise TypeError(f"{what} must be a torch.nn.Module or a deconv LoadedModel, "
                    f"got {type(model).__name__}")


def _name(model) -> str:
    return model.name if isinstance(model, LoadedModel) else type(model).__name__


def _parameter_like(module: nn.Module) -> tuple[torch.dtype, torch.device]:
    p = next(module.parameters(), None)
    if p is None:
        return torch.get_default_dtype(), torch.device("cpu")
    return p.dtype, p.device


def _as_input(image, module: nn.Module, loaded: LoadedModel | None) -> torch.Tensor:
    """Validate ``image`` and return the model input ``[C, H, W]`` on the model's device."""
    if isinstance(image, (Image.Image, np.ndarray)):
        if loaded is None:
            raise TypeError("a picture (PIL image / array) needs a deconv LoadedModel to "
                            "preprocess it; with a bare nn.Module pass a normalized tensor")
        image = loaded.preprocess(image)
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a tensor [C, H, W] or a picture, got "
                        f"{type(image).__name__}")
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3:
        raise ValueError(f"image must be one image [C, H, W] or [1, C, H, W], got shape "
                         f"{list(image.shape)}; sweep a batch one image at a time")
    if not image.is_floating_point():
        raise TypeError(f"image must be a float tensor (normalized model input), got "
                        f"{image.dtype}; use LoadedModel.preprocess or convert it")
    dtype, device = _parameter_like(module)
    if image.dtype != dtype:
        raise TypeError(f"image dtype {image.dtype} differs from the model's parameters "
                        f"({dtype}); convert one of them (e.g. image.to({dtype}))")
    if not torch.isfinite(image).all():
        raise ValueError("image contains NaN or inf; clean it before the sweep")
    return image.detach().to(device)


def _pair(value, what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, numbers.Integral) else value
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
            or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in pair)):
        raise TypeError(f"{what} must be an int or a pair of ints, got {value!r}")
    if min(pair) < 1:
        raise ValueError(f"{what} must be at least 1 pixel, got {value!r}")
    return int(pair[0]), int(pair[1])


def _parse_feature(feature) -> tuple[str | int, int | str]:
    if not isinstance(feature, (tuple, list)) or len(feature) != 2:
        raise TypeError(f"feature must be a pair (layer, channel | 'strongest'), got {feature!r}")
    return feature[0], feature[1]


def _check_feature(layer, channel, model) -> tuple[str, int | str]:
    name = resolve_layer(model, layer)
    if channel != "strongest" and (isinstance(channel, bool)
                                   or not isinstance(channel, numbers.Integral)):
        raise TypeError(f"channel must be an int or 'strongest', got {channel!r}")
    return name, channel


def _resolve_channel(channel, base_layer: torch.Tensor, layer: str) -> int:
    if base_layer is None or base_layer.ndim < 2:
        raise ValueError(f"layer {layer!r} gives no [B, C, ...] tensor to take a feature map of")
    channels = base_layer.shape[1]
    if channel == "strongest":
        return int(base_layer[0].reshape(channels, -1).max(dim=1).values.argmax())
    if not 0 <= channel < channels:
        raise ValueError(f"channel {channel} out of range: layer {layer!r} has {channels} "
                         f"feature maps (0..{channels - 1})")
    return int(channel)


def _resolve_target(target, base_prob: torch.Tensor, categories: list[str] | None) -> int:
    classes = base_prob.numel()
    if target is None:
        return int(base_prob.argmax())
    if isinstance(target, str):
        if not categories:
            raise ValueError(f"target {target!r} is a name but the model has no categories; "
                             "pass a class index")
        if target not in categories:
            import difflib

            close = difflib.get_close_matches(target, categories, n=3)
            raise ValueError(f"unknown class {target!r}" +
                             (f"; did you mean {close}?" if close else "; see .categories"))
        return categories.index(target)
    if isinstance(target, bool) or not isinstance(target, numbers.Integral):
        raise TypeError(f"target must be a class index, a class name or None, got {target!r}")
    if not 0 <= target < classes:
        raise ValueError(f"target {target} out of range: the model has {classes} classes")
    return int(target)


def _convert_input(x: torch.Tensor, src: LoadedModel | None, dst: LoadedModel | None,
                   dst_module: nn.Module) -> torch.Tensor:
    """Map a model input of ``src`` to the input of ``dst`` (same picture, other normalization)."""
    dtype, device = _parameter_like(dst_module)
    if src is not None and dst is not None:
        pixels = _affine(x, src.std, src.mean, inverse=False)
        return _affine(pixels, dst.std, dst.mean, inverse=True).to(device=device, dtype=dtype)
    return x.to(device=device, dtype=dtype)


def _affine(x: torch.Tensor, std, mean, inverse: bool) -> torch.Tensor:
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - m) / s if inverse else x * s + m
